"""jetson-hil: a hardware-in-the-loop test and benchmark harness for NVIDIA Jetson boards."""

__version__ = "0.1.0"
