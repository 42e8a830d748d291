"""Deploying the module through Azure IoT Hub / IoT Edge: the deployment manifest first."""
