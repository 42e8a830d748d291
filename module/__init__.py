"""The jetson-hil reference detection module: runs ON the board (Python 3.6+: JetPack 4 ships 3.6.9).

Engine backends (TensorRT, ONNX Runtime), a threaded pipeline from a frame source to sinks,
a disk-backed uplink outbox, a control/metrics API on 127.0.0.1 and a bench mode.
"""

__version__ = "0.1.0"
