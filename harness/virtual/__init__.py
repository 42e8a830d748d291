"""Virtual Jetson boards: Docker containers the harness reaches over SSH exactly like real boards.

Everything that makes a container look like a Jetson (identity files, emulated nvpmodel,
jetson_clocks and tegrastats, reboot) lives on the far side of the SSH connection, in the image.
"""
