"""Deterministic synthetic shape scenes for training, validating and streaming the reference detector.

Nothing can be downloaded on the board or in CI, so the detector is trained and checked on scenes drawn here
from a seed alone. Only numpy is used because the same generator feeds the synthetic video source on the board.

Classes (index: name) and how each is drawn; ``size`` is log-uniform in 12..120 px:

0. ``circle``   filled disc, diameter = size.
1. ``square``   filled axis-aligned square (aspect jitter 0.9..1.1), never rotated so it stays unlike ``diamond``.
2. ``triangle`` filled, near-equilateral triangle at any rotation.
3. ``cross``    axis-aligned plus sign, arm thickness 25..40 % of its extent.
4. ``ring``     annulus, inner radius 45..70 % of the outer one.
5. ``diamond``  rhombus with axis-aligned diagonals (aspect 0.7..1.3).

Every class keeps its name under horizontal/vertical flips and 90 degree turns, which training relies on for
augmentation. Boxes are the exact geometric extents of the shape (x1, y1, x2, y2, in pixels, pixel edges at integers),
also where a later shape partly covers it. Backgrounds are gradients plus low-frequency waves, random lines and
Gaussian noise. The same seed gives identical bytes with the same numpy on the same platform.

Split convention: training scenes use seeds ``TRAIN_SEED0 + i``, validation scenes ``VAL_SEED0 + i``.
"""

import math
from typing import Callable, List, Tuple

import numpy as np

CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "diamond")
TRAIN_SEED0 = 0
VAL_SEED0 = 1_000_000

MIN_SIZE = 12.0
MAX_SIZE = 120.0
MAX_OBJECTS = 6
# Largest share of the smaller of two boxes that may be covered by the other one; keeps every object visible.
MAX_OVERLAP = 0.3

_Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Scene:
    """One image with its ground truth."""

    def __init__(self, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> None:
        self.image = image  # HxWx3 uint8 RGB
        self.boxes = boxes  # (N,4) float32 x1,y1,x2,y2 pixels
        self.classes = classes  # (N,) int64

    def __repr__(self) -> str:
        return f"Scene(image={self.image!r}, boxes={self.boxes!r}, classes={self.classes!r})"


class _Shape:
    """A shape centred on the origin: signed distance (pixels, negative inside) and its box relative to the centre."""

    def __init__(self, cls: int, sdf: _Sdf, extent: Tuple[float, float, float, float]) -> None:
        self.cls = cls
        self.sdf = sdf
        self.extent = extent

    def raster(self, cx: float, cy: float) -> Tuple[int, int, np.ndarray]:
        """Anti-aliased coverage of the shape centred at (cx, cy): top-left pixel and float32 alpha patch."""
        ex1, ey1, ex2, ey2 = self.extent
        x0 = math.floor(cx + ex1) - 1
        y0 = math.floor(cy + ey1) - 1
        x1 = math.ceil(cx + ex2) + 1
        y1 = math.ceil(cy + ey2) + 1
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
        alpha = np.clip(0.5 - self.sdf(xs, ys), 0.0, 1.0).astype(np.float32)
        return x0, y0, alpha


def _make_shape(rng: np.random.Generator, cls: int, size: float) -> _Shape:
    """Draw the random geometry of one shape of class ``cls`` whose larger extent is about ``size`` pixels."""
    half = size / 2.0
    if cls == 0:  # circle

        def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.sqrt(x * x + y * y) - half

        return _Shape(cls, sdf, (-half, -half, half, half))
    if cls == 1:  # square
        hx, hy = half, half * float(rng.uniform(0.9, 1.1))

        def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.maximum(np.abs(x) - hx, np.abs(y) - hy)

        return _Shape(cls, sdf, (-hx, -hy, hx, hy))
    if cls == 2:  # triangle
        theta = float(rng.uniform(0.0, 2.0 * math.pi))
        angles = theta + np.array([0.0, 2.0, 4.0]) * math.pi / 3.0 + rng.uniform(-0.15, 0.15, 3)
        vx, vy = np.cos(angles), np.sin(angles)
        scale = size / max(float(vx.max() - vx.min()), float(vy.max() - vy.min()))
        vx, vy = vx * scale, vy * scale
        # Outward unit normals and offsets of the three edges (vertices are counter-clockwise in y-down pixels).
        ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy
        length = np.hypot(ex, ey)
        nx, ny = ey / length, -ex / length
        off = nx * vx + ny * vy
        edges = [(float(a), float(b), float(c)) for a, b, c in zip(nx, ny, off)]

        def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            d = [a * x + b * y - c for a, b, c in edges]
            return np.maximum(np.maximum(d[0], d[1]), d[2])

        return _Shape(cls, sdf, (float(vx.min()), float(vy.min()), float(vx.max()), float(vy.max())))
    if cls == 3:  # cross
        hx, hy = half, half * float(rng.uniform(0.9, 1.1))
        t = float(rng.uniform(0.125, 0.2)) * size

        def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            ax, ay = np.abs(x), np.abs(y)
            return np.minimum(np.maximum(ax - hx, ay - t), np.maximum(ax - t, ay - hy))

        return _Shape(cls, sdf, (-hx, -hy, hx, hy))
    if cls == 4:  # ring
        inner = half * float(rng.uniform(0.45, 0.7))

        def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            r = np.sqrt(x * x + y * y)
            return np.maximum(r - half, inner - r)

        return _Shape(cls, sdf, (-half, -half, half, half))
    # diamond
    aspect = float(rng.uniform(0.7, 1.3))
    a, b = (half, half / aspect) if aspect > 1.0 else (half * aspect, half)
    norm = a * b / math.hypot(a, b)

    def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (np.abs(x) / a + np.abs(y) / b - 1.0) * norm

    return _Shape(cls, sdf, (-a, -b, a, b))


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Textured float32 HxWx3 background in 0..255: gradient, low-frequency waves, random lines, no noise yet."""
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    proj = xs[None, :] * math.cos(angle) + ys[:, None] * math.sin(angle)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    img = c0 + t[..., None] * (c1 - c0)
    for _ in range(int(rng.integers(1, 4))):  # separable waves: cheap texture at any size
        fx, fy = rng.uniform(0.005, 0.05, 2)
        px, py = rng.uniform(0.0, 2.0 * math.pi, 2)
        wave = np.sin(ys * fy + py)[:, None] * np.sin(xs * fx + px)[None, :]
        img += wave[..., None] * rng.uniform(-30, 30, 3).astype(np.float32)
    for _ in range(int(rng.integers(2, 10))):
        _draw_line(rng, img)
    return img


def _draw_line(rng: np.random.Generator, img: np.ndarray) -> None:
    """Blend one random anti-aliased segment into ``img`` in place, touching only its bounding box."""
    height, width = img.shape[:2]
    p = rng.uniform([-0.1 * width, -0.1 * height], [1.1 * width, 1.1 * height], (2, 2))
    half_width = float(rng.uniform(0.5, 2.0))
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    opacity = float(rng.uniform(0.3, 0.9))
    pad = half_width + 1.0
    x0, y0 = max(int(p[:, 0].min() - pad), 0), max(int(p[:, 1].min() - pad), 0)
    x1, y1 = min(int(p[:, 0].max() + pad) + 1, width), min(int(p[:, 1].max() + pad) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, :] - p[0, 0]
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5)[:, None] - p[0, 1]
    dx, dy = p[1] - p[0]
    s = np.clip((xs * dx + ys * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    dist = np.hypot(xs - s * dx, ys - s * dy)
    alpha = (np.clip(half_width + 0.5 - dist, 0.0, 1.0) * opacity).astype(np.float32)[..., None]
    patch = img[y0:y1, x0:x1]
    patch += alpha * (colour - patch)


def _colour_for(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random fill colour clearly unlike the mean colour ``under`` the shape, so every object is visible."""
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    for _ in range(20):
        if float(np.abs(colour - under).sum()) > 120.0:
            break
        colour = rng.uniform(0, 255, 3).astype(np.float32)
    return colour


def _paint(rng: np.random.Generator, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Premultiplied float32 RGB patch for ``alpha``: the colour with a random linear shading across the shape."""
    h, w = alpha.shape
    gx, gy = rng.uniform(-0.3, 0.3, 2)
    shade = 1.0 + gx * np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    shade = shade + gy * np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    return np.clip(shade[..., None] * colour, 0.0, 255.0) * alpha[..., None]


def _blend(img: np.ndarray, x0: int, y0: int, alpha: np.ndarray, premult: np.ndarray) -> None:
    """Composite a premultiplied patch over float32 ``img`` in place (the patch lies fully inside ``img``)."""
    h, w = alpha.shape
    patch = img[y0 : y0 + h, x0 : x0 + w]
    patch *= 1.0 - alpha[..., None]
    patch += premult


def _overlap(box: np.ndarray, others: List[np.ndarray]) -> float:
    """Largest share of the smaller box covered by the other, over ``others``."""
    worst = 0.0
    area = (box[2] - box[0]) * (box[3] - box[1])
    for o in others:
        iw = min(box[2], o[2]) - max(box[0], o[0])
        ih = min(box[3], o[3]) - max(box[1], o[1])
        if iw > 0 and ih > 0:
            worst = max(worst, iw * ih / min(area, (o[2] - o[0]) * (o[3] - o[1])))
    return worst


def _random_size(rng: np.random.Generator, low: float, high: float) -> float:
    """Log-uniform object size so small and large objects are equally common."""
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0.0, 255.0).astype(np.uint8)


def render_scene(seed: int, width: int = 320, height: int = 320) -> Scene:
    """Render the still scene for ``seed``: 1..6 shapes on a textured background, all fully inside the image."""
    rng = np.random.default_rng(seed)
    img = _background(rng, width, height)
    boxes: List[np.ndarray] = []
    classes: List[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(30):
            cls = int(rng.integers(len(CLASSES)))
            shape = _make_shape(rng, cls, _random_size(rng, MIN_SIZE, min(MAX_SIZE, min(width, height) - 4.0)))
            ex1, ey1, ex2, ey2 = shape.extent
            cx = float(rng.uniform(1.0 - ex1, width - 1.0 - ex2))
            cy = float(rng.uniform(1.0 - ey1, height - 1.0 - ey2))
            box = np.array([cx + ex1, cy + ey1, cx + ex2, cy + ey2], dtype=np.float32)
            if _overlap(box, boxes) <= MAX_OVERLAP:
                break
        else:
            continue
        x0, y0, alpha = shape.raster(cx, cy)
        h, w = alpha.shape
        colour = _colour_for(rng, img[y0 : y0 + h, x0 : x0 + w].mean(axis=(0, 1)))
        _blend(img, x0, y0, alpha, _paint(rng, alpha, colour))
        boxes.append(box)
        classes.append(shape.cls)
    img += rng.standard_normal((height, width, 3), dtype=np.float32) * float(rng.uniform(2.0, 12.0))
    return Scene(
        image=_to_uint8(img),
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.array(classes, dtype=np.int64),
    )


def _bounce(start: float, velocity: float, index: int, span: float) -> float:
    """Position after ``index`` frames of constant motion reflecting off 0 and ``span``: random access, smooth."""
    if span <= 0.0:
        return 0.0
    u = (start + velocity * index) % (2.0 * span)
    return u if u <= span else 2.0 * span - u


class MovingScene:
    """A synthetic video: fixed shapes moving at constant speed and bouncing off the frame edges.

    The background and every sprite are rendered once, so a frame costs one copy and a few small blends.
    Positions are integer pixels (a closed form of the frame index), so ``frame(i)`` is random access and
    deterministic for (seed, i). Sizes scale with the frame (12..120 px per 320 px of its longer side). Smaller
    shapes are drawn on top of larger ones so none vanishes entirely behind a larger one, but unlike
    ``render_scene`` (at most 30 % overlap) crossing shapes may briefly cover each other heavily; the boxes still
    list them, so expect a few misses on those frames.
    """

    def __init__(self, seed: int, width: int = 640, height: int = 480, objects: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        self._background = _to_uint8(
            _background(rng, width, height)
            + rng.standard_normal((height, width, 3), dtype=np.float32) * float(rng.uniform(2.0, 8.0))
        )
        mean = self._background.reshape(-1, 3).mean(axis=0).astype(np.float32)
        # Sizes scale with the frame so that, letterboxed to the detector's 320 px input, they match training.
        scale = max(width, height) / 320.0
        low, high = MIN_SIZE * scale, min(MAX_SIZE * scale, min(width, height) / 2.0)
        sprites = []
        for _ in range(objects):
            shape = _make_shape(rng, int(rng.integers(len(CLASSES))), _random_size(rng, low, high))
            ex1, ey1, ex2, ey2 = shape.extent
            # Rendered with the extent's top-left 1 px inside the patch; per frame it is shifted by whole pixels.
            x0, y0, alpha = shape.raster(1.0 - ex1, 1.0 - ey1)
            premult = _paint(rng, alpha, _colour_for(rng, mean))
            local = np.float32([1.0 - x0, 1.0 - y0, 1.0 + ex2 - ex1 - x0, 1.0 + ey2 - ey1 - y0])
            h, w = alpha.shape
            span_x, span_y = float(width - w), float(height - h)
            speed = float(rng.uniform(1.0, 6.0))
            heading = float(rng.uniform(0.0, 2.0 * math.pi))
            motion = (
                float(rng.uniform(0.0, span_x)),
                float(rng.uniform(0.0, span_y)),
                speed * math.cos(heading),
                speed * math.sin(heading),
                span_x,
                span_y,
            )
            sprites.append((w * h, shape.cls, alpha[..., None], premult, local, motion))
        sprites.sort(key=lambda s: -s[0])  # largest first, so smaller ones stay visible on top
        self._sprites = [s[1:] for s in sprites]

    def frame(self, index: int) -> Scene:
        """Render frame ``index``; identical output for the same (seed, index)."""
        img = self._background.copy()
        boxes = np.empty((len(self._sprites), 4), dtype=np.float32)
        classes = np.empty(len(self._sprites), dtype=np.int64)
        for i, (cls, alpha, premult, local, (sx, sy, vx, vy, span_x, span_y)) in enumerate(self._sprites):
            x0 = round(_bounce(sx, vx, index, span_x))
            y0 = round(_bounce(sy, vy, index, span_y))
            h, w = premult.shape[:2]
            patch = img[y0 : y0 + h, x0 : x0 + w]
            patch[...] = _to_uint8(patch * (1.0 - alpha) + premult)
            boxes[i] = local + np.float32([x0, y0, x0, y0])
            classes[i] = cls
        return Scene(image=img, boxes=boxes, classes=classes)
