"""Frame sources: image folder, video file, camera device, synthetic moving objects, in-memory frames.

A source is an iterator of ``Frame``; a spec string picks one on the command line:
``synthetic[:FRAMES]``, ``images:DIR`` (or a directory), ``video:FILE`` (or a file),
``camera:INDEX`` (or ``/dev/videoN``).
"""

import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from .errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class Frame:
    """One image on its way through the pipeline, with a timestamp per stage (time.time() seconds)."""

    def __init__(self, frame_id: int, image: np.ndarray, name: str, ts: Optional[Dict[str, float]] = None) -> None:
        self.frame_id = frame_id
        self.image = image
        self.name = name
        self.ts: Dict[str, float] = {} if ts is None else ts

    def __repr__(self) -> str:
        return f"Frame(frame_id={self.frame_id!r}, image={self.image!r}, name={self.name!r}, ts={self.ts!r})"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SourceError("reading images, video or cameras needs OpenCV: pip install opencv-python-headless") from None
    return cv2


def read_image(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    cv2 = _cv2()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}: not an image file or unreadable")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise SourceError(f"image folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SourceError(f"image folder {folder} has no .jpg/.png/.bmp files")
    return images


def image_folder(folder: Path, limit: Optional[int] = None) -> Iterator[Frame]:
    """List now (so a missing or empty folder fails at start, in the caller's thread), read lazily."""
    paths = list_images(folder)[:limit]
    return (Frame(index, read_image(path), path.name) for index, path in enumerate(paths))


def _capture(target: Union[str, int], what: str, limit: Optional[int]) -> Iterator[Frame]:
    """Open now (so a bad file fails at start, in the caller's thread), read lazily."""
    cv2 = _cv2()
    # FFmpeg logs its own complaint about a bad file ("moov atom not found") to stderr; our error says it in one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read by OpenCV when FFmpeg first opens
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SourceError(f"cannot open {what} {target}: missing, unreadable or no codec for it")
    return _read(capture, what, target, limit)


def _read(capture: object, what: str, target: Union[str, int], limit: Optional[int]) -> Iterator[Frame]:
    cv2 = _cv2()
    try:
        index = 0
        while limit is None or index < limit:
            ok, image = capture.read()
            if not ok:
                if index == 0:
                    raise SourceError(f"{what} {target} opened but gave no frame: unreadable or empty")
                return
            yield Frame(index, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), f"{what}#{index}")
            index += 1
    finally:
        capture.release()


def synthetic(frames: Optional[int], seed: int = 7, width: int = 640, height: int = 480) -> Iterator[Frame]:
    """Moving synthetic objects, deterministic per (seed, frame): the virtual boards' camera."""
    from .synthetic import MovingScene

    scene = MovingScene(seed, width=width, height=height)
    index = 0
    while frames is None or index < frames:
        yield Frame(index, scene.frame(index).image, f"synthetic#{index}")
        index += 1


def cycle(images: Sequence[np.ndarray], frames: int) -> Iterator[Frame]:
    """Frames from memory (MLPerf-style: samples loaded before timing so I/O is not measured)."""
    for index in range(frames):
        yield Frame(index, images[index % len(images)], f"memory#{index % len(images)}")


def open_source(spec: str, limit: Optional[int] = None) -> Iterator[Frame]:
    """Open a source from its spec (see module docstring); errors name the spec and what to do."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        frames = int(arg) if arg else None
        if limit is not None:
            frames = limit if frames is None else min(frames, limit)
        return synthetic(frames)
    if kind == "camera" or spec.startswith("/dev/video"):
        target = arg if kind == "camera" else spec
        return _capture(int(target) if target.isdigit() else target, "camera", limit)
    path = Path(arg if kind in ("images", "video") else spec)
    if kind == "images" or path.is_dir():
        return image_folder(path, limit)
    if kind == "video" or path.suffix:
        if not path.is_file():
            raise SourceError(f"video file {path} not found")
        return _capture(str(path), "video", limit)
    raise SourceError(f"unknown source '{spec}': use synthetic[:N], images:DIR, video:FILE or camera:INDEX")
