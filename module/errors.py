"""Errors the module reports as one clear line (``python -m module`` exits 2 on them)."""


class ModuleError(Exception):
    """A problem the user can fix: bad model, bad source, missing backend, bad config."""


class ModelError(ModuleError):
    """The model file is missing, unreadable or has an output layout we cannot decode."""


class BackendUnavailable(ModuleError):
    """The requested inference backend is not installed or has no device here."""


class SourceError(ModuleError):
    """A frame source (image folder, video, camera) cannot be opened or read."""


class UplinkUnavailable(ModuleError):
    """The uplink sink asked for cannot work here: its client library or its environment is missing."""
