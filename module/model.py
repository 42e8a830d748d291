"""The model file a run uses: path, content hash and class labels."""

import ast
import hashlib
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

from .errors import ModelError

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "shapes-det.onnx"


class ModelInfo(NamedTuple):
    """A model identified by its content: every message and result carries ``sha256``."""

    path: Path
    sha256: str
    labels: Optional[Tuple[str, ...]]

    def label(self, class_id: int) -> str:
        if self.labels is not None and 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class{class_id}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_labels(path: Path) -> Tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise ModelError(f"labels file {path} is empty: put one class name per line")
    return labels


def labels_from_metadata(metadata: dict) -> Optional[Tuple[str, ...]]:
    """Class names from an Ultralytics export's ONNX metadata (``names: {0: 'person', ...}``)."""
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, (list, tuple)):
        return tuple(str(n) for n in names)
    return None


def load_model(path: Union[str, Path, None] = None, labels: Union[str, Path, None] = None) -> ModelInfo:
    """Resolve a model path (default: the shipped reference model) and its labels.

    Labels come from ``labels`` when given, else from ``<model>.labels.txt`` beside the model;
    backends may fill them later from ONNX metadata.
    """
    model_path = Path(path) if path is not None else DEFAULT_MODEL
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} not found: pass --model PATH to an .onnx (or .engine) file")
    if labels is not None:
        label_names: Optional[Tuple[str, ...]] = read_labels(Path(labels))
    else:
        sibling = model_path.with_suffix(".labels.txt")
        label_names = read_labels(sibling) if sibling.is_file() else None
    return ModelInfo(path=model_path, sha256=file_sha256(model_path), labels=label_names)
