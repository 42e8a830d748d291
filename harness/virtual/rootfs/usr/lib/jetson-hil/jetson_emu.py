#!/usr/bin/python3
"""Entry point of the emulated Jetson tools on a virtual board: one program, named by the link it runs as
(nvpmodel, jetson_clocks, tegrastats, reboot, jetson-model); the board model is the `boardmodel` package."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

from boardmodel.tools import TOOLS

if __name__ == "__main__":
    sys.exit(TOOLS[os.path.basename(sys.argv[0])](sys.argv[1:]))
