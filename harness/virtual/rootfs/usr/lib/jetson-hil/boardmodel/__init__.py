"""The virtual board's model of a Jetson, one module per concept (load, clocks, power, thermal, memory).

Runs INSIDE the virtual board's container with Debian's python3 and nothing else. `daemon` steps the model and
publishes its state; the emulated tools (`tools`: tegrastats, jetson_clocks, nvpmodel) read that state, so every
tool shows the same board. The calibration comes from the device profile (board.json), which cites where each
number comes from; what is assumed rather than measured on a real board is listed in /etc/jetson-hil/modeled.
"""
