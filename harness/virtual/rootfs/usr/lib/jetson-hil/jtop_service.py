#!/usr/bin/python3
"""jetson-stats' own jtop service on a virtual board, reading the board model through jetson-stats' testing mode.

The server is jetson-stats' (installed offline in the image, as labs install it on their boards), run as its
systemd unit runs it. Two of its readers cannot work in a container and are the only things given to it here:
the hardware (on a Jetson from the device tree under /proc, on x86 from DMI; neither is in a container), taken
from the board's profile instead, and the /sys tree, read from /fake_sys (JTOP_TESTING), which the model writes.
"""

import json
import logging
import os
import sys

BOARD_FILE = "/etc/jetson-hil/board.json"


def board_hardware() -> dict:
    """What jetson-stats' get_jetson_variables() reads on a real board of the profile."""
    with open(BOARD_FILE) as f:
        spec = json.load(f)
    return {"Model": spec["device_tree_model"], "699-level Part Number": spec["part_numbers"][0],
            "Module": spec["display_name"], "SoC": spec["soc"], "CUDA Arch BIN": spec["cuda_arch"],
            "L4T": spec["virtual"]["l4t"]}


def main() -> int:
    from boardmodel.state import read_state

    read_state()  # the model has written its sysfs: jetson-stats looks for the hardware once, at start
    os.environ["JTOP_TESTING"] = "1"
    os.environ["JTOP_SERVICE"] = "True"
    from jtop import service  # after the environment: jetson-stats reads it as its services start

    service.get_hardware = board_hardware
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s - %(message)s")
    server = service.JtopServer(force=True)
    server.loop_for_ever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
