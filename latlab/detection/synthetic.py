"""The built-in detection dataset: ten kinds of rendered shapes on cluttered, textured backgrounds.

Why rendered shapes: latlab must train and score candidate detectors on a laptop with no downloads, and
the score has to separate a weak detector from a strong one. Each image is generated from
``(seed, split, index)`` alone, so a dataset is reproducible bit for bit and any image can be re-made.

What makes it hard enough to rank models:

- ten shape classes that differ only in outline/topology (disc vs ring, square vs frame, L vs T vs bar),
  under any rotation, so a model has to see structure, not colour;
- objects from ~9 % to ~40 % of the image side, 1–7 per image, with partial occlusion between objects;
- textured backgrounds (random sinusoid gratings + smooth blobs + pixel noise) and 3–8 distractor
  blobs/strokes per image that share colours with the objects;
- random colours with no guaranteed contrast to the background.

Boxes are the tight box of each shape's rendered mask (after rotation), so labels are exact. Objects are
placed so that no labelled object loses more than ``MAX_OCCLUDED`` of its area to later ones.

The knobs above live in one :class:`ShapesPreset` per named variant (``shapes10``, the hard default, and
``shapes4-easy``, big high-contrast shapes on plain backgrounds that a detector learns in a minute of CPU
training, for the quick start). ``register_preset`` adds more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latlab.errors import DataError

CLASS_NAMES = ("disc", "ring", "square", "frame", "triangle", "plus", "star", "bar", "ell", "tee")
GENERATOR_VERSION = 2
MAX_OCCLUDED = 0.4
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class ShapesPreset:
    """One variant of the generator: which shapes, how big, how many, how much clutter and texture.

    Sizes are in pixels at 160 px (scaled with the image). ``min_contrast`` > 0 redraws an object's colour
    until its mean absolute difference to the background under it reaches that value (0: any colour).
    ``version`` enters every image's seed, so changing a preset's rendering means bumping it.
    """

    name: str
    classes: tuple[int, ...]
    size_px: tuple[float, float] = (14.0, 64.0)
    objects: tuple[int, int] = (1, 8)  # rng.integers bounds: low inclusive, high exclusive
    clutter_under: tuple[int, int] = (3, 9)
    clutter_over: tuple[int, int] = (0, 3)
    textured: bool = True
    min_contrast: float = 0.0
    version: int = GENERATOR_VERSION
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [CLASS_NAMES[k] for k in self.classes]


PRESETS: dict[str, ShapesPreset] = {}
DEFAULT_PRESET = "shapes10"


def register_preset(preset: ShapesPreset) -> ShapesPreset:
    """Add a named generator variant; a name may be registered once."""
    if preset.name in PRESETS:
        raise DataError(f"built-in data preset {preset.name!r} is already registered")
    if not preset.classes or any(not 0 <= k < len(CLASS_NAMES) for k in preset.classes):
        raise DataError(f"preset {preset.name!r}: classes must index {list(CLASS_NAMES)}")
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> ShapesPreset:
    """The preset called ``name``; an unknown name is an error listing the known ones."""
    if name not in PRESETS:
        raise DataError(f"unknown built-in data preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]


register_preset(ShapesPreset(
    "shapes10", tuple(range(len(CLASS_NAMES))),
    description="ten shapes, 9-40 % of the side, 1-7 per image, textured cluttered backgrounds (the default)"))
register_preset(ShapesPreset(
    "shapes4-easy", (0, 4, 5, 7), size_px=(32.0, 72.0), objects=(1, 4), clutter_under=(0, 1),
    clutter_over=(0, 1), textured=False, min_contrast=0.35, version=1,
    description="four distinct shapes, 20-45 % of the side, 1-3 per image, plain backgrounds, high contrast"))


def _sdf(kind: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance-like field of shape ``kind`` on unit coordinates (inside < 0, extent ≈ [-1, 1])."""
    if kind == 0:  # disc
        return np.hypot(x, y) - 1.0
    if kind == 1:  # ring
        return np.abs(np.hypot(x, y) - 0.72) - 0.28
    if kind == 2:  # square
        return np.maximum(np.abs(x), np.abs(y)) - 0.85
    if kind == 3:  # frame (square outline)
        return np.abs(np.maximum(np.abs(x), np.abs(y)) - 0.7) - 0.22
    if kind == 4:  # equilateral triangle
        k = math.sqrt(3.0)
        return np.maximum(np.abs(x) * k / 2 + y / 2, -y) - 0.5
    if kind == 5:  # plus
        arm_h = np.maximum(np.abs(x) - 1.0, np.abs(y) - 0.3)
        arm_v = np.maximum(np.abs(y) - 1.0, np.abs(x) - 0.3)
        return np.minimum(arm_h, arm_v)
    if kind == 6:  # five-pointed star: radius modulated by angle
        ang = np.arctan2(y, x)
        r = np.hypot(x, y)
        lobe = np.abs(((ang * 5 / (2 * math.pi)) % 1.0) - 0.5) * 2  # 1 at tips, 0 between
        return r - (0.42 + 0.58 * lobe**1.6)
    if kind == 7:  # bar
        return np.maximum(np.abs(x) - 1.0, np.abs(y) - 0.28)
    if kind == 8:  # L
        vert = np.maximum(np.abs(x + 0.7) - 0.3, np.abs(y) - 1.0)
        horiz = np.maximum(np.abs(x) - 1.0, np.abs(y - 0.7) - 0.3)
        return np.minimum(vert, horiz)
    if kind == 9:  # T
        top = np.maximum(np.abs(x) - 1.0, np.abs(y + 0.7) - 0.3)
        stem = np.maximum(np.abs(x) - 0.3, np.abs(y) - 1.0)
        return np.minimum(top, stem)
    raise ValueError(f"shape kind must be in [0, {len(CLASS_NAMES)}), got {kind}")


def _shape_mask(kind: int, size: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage mask (float32 in [0, 1]) of one shape, ``size`` pixels across before rotation."""
    half = size / 2 * 1.45  # room for rotation
    n = max(math.ceil(2 * half), 3)
    ss = _SUPERSAMPLE
    coords = (np.arange(n * ss, dtype=np.float32) + 0.5) / ss - n / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    aspect = rng.uniform(0.8, 1.25)  # mild anisotropic stretch
    u = (c * xx + s * yy) / (size / 2) / aspect
    v = (-s * xx + c * yy) / (size / 2) * aspect
    inside = (_sdf(kind, u, v) < 0).astype(np.float32)
    return inside.reshape(n, ss, n, ss).mean(axis=(1, 3))


def _background(h: int, w: int, rng: np.random.Generator, textured: bool = True) -> np.ndarray:
    """Float background [h, w, 3] in [0, 1]: gratings + smooth blobs + noise, or flat colour + noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if not textured:
        img += rng.normal(0, 0.03, size=(h, w, 3)).astype(np.float32)
        return img
    for _ in range(rng.integers(2, 5)):
        freq = rng.uniform(0.02, 0.25)
        theta = rng.uniform(0, math.pi)
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
        img += wave[..., None] * rng.uniform(-0.12, 0.12, size=3).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sig = rng.uniform(0.08, 0.35) * max(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
        img += blob[..., None] * rng.uniform(-0.3, 0.3, size=3).astype(np.float32)
    img += rng.normal(0, rng.uniform(0.02, 0.08), size=(h, w, 3)).astype(np.float32)
    return img


def _paste(img: np.ndarray, mask: np.ndarray, y0: int, x0: int, color: np.ndarray) -> np.ndarray:
    """Alpha-blend ``color`` through ``mask`` at (y0, x0), clipped to the image; returns the full-size alpha."""
    h, w = img.shape[:2]
    mh, mw = mask.shape
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + mh), min(w, x0 + mw)
    alpha = np.zeros((h, w), np.float32)
    if ye <= ys or xe <= xs:
        return alpha
    alpha[ys:ye, xs:xe] = mask[ys - y0 : ye - y0, xs - x0 : xe - x0]
    region = img[ys:ye, xs:xe]
    a = alpha[ys:ye, xs:xe, None]
    # Slight shading across the object so colour is not perfectly flat.
    shade = np.linspace(0.9, 1.1, xe - xs, dtype=np.float32)[None, :, None]
    region[...] = region * (1 - a) + np.clip(color * shade, 0, 1) * a
    return alpha


def _distractor(size: int, rng: np.random.Generator) -> np.ndarray:
    """A clutter mask: an irregular blob or a thin stroke (not one of the ten classes)."""
    n = max(size, 3)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    u, v = (xx - n / 2) / (n / 2), (yy - n / 2) / (n / 2)
    if rng.random() < 0.5:  # lumpy blob
        ang = np.arctan2(v, u)
        r = 0.6 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * ang + rng.uniform(0, 6.3)) for k in (2, 3, 5))
        return (np.hypot(u, v) < r).astype(np.float32)
    theta = rng.uniform(0, math.pi)  # stroke
    d = np.abs(u * math.sin(theta) - v * math.cos(theta))
    along = np.abs(u * math.cos(theta) + v * math.sin(theta))
    return ((d < rng.uniform(0.06, 0.15)) & (along < 0.95)).astype(np.float32)


def _object_colour(img: np.ndarray, mask: np.ndarray, y0: int, x0: int, rng: np.random.Generator,
                   min_contrast: float) -> np.ndarray:
    """A random colour; with ``min_contrast`` > 0, redrawn (up to 20 times) until it stands out from the
    background under the mask."""
    color = rng.uniform(0, 1, size=3).astype(np.float32)
    if min_contrast <= 0:
        return color
    h, w = img.shape[:2]
    mh, mw = mask.shape
    ys, xs, ye, xe = max(0, y0), max(0, x0), min(h, y0 + mh), min(w, x0 + mw)
    under = img[ys:ye, xs:xe].reshape(-1, 3).mean(0) if ye > ys and xe > xs else img.reshape(-1, 3).mean(0)
    for _ in range(20):
        if float(np.abs(color - under).mean()) >= min_contrast:
            break
        color = rng.uniform(0, 1, size=3).astype(np.float32)
    return color


def render_image(seed: int, split: int, index: int, imgsz: int = 160,
                 preset: str | ShapesPreset = DEFAULT_PRESET) -> tuple[np.ndarray, np.ndarray]:
    """Render image ``index`` of ``split`` (0 train, 1 val): uint8 [imgsz, imgsz, 3] RGB and labels [M, 5].

    Labels are ``cls, cx, cy, w, h`` normalised to [0, 1] (YOLO format); ``cls`` indexes the preset's names.
    """
    spec = preset if isinstance(preset, ShapesPreset) else get_preset(preset)
    rng = np.random.default_rng([seed, split, index, spec.version])
    h = w = imgsz
    img = _background(h, w, rng, spec.textured)
    scale = imgsz / 160
    log_lo, log_hi = math.log(spec.size_px[0]), math.log(spec.size_px[1])
    for _ in range(rng.integers(*spec.clutter_under)):  # clutter under the objects
        size = int(rng.uniform(6, 30) * scale)
        _paste(img, _distractor(size, rng), int(rng.integers(-size // 2, h)), int(rng.integers(-size // 2, w)),
               rng.uniform(0, 1, size=3).astype(np.float32))
    n_obj = int(rng.integers(*spec.objects))
    alphas: list[np.ndarray] = []
    boxes: list[tuple[int, float, float, float, float]] = []
    areas: list[float] = []
    for _ in range(n_obj):
        for _attempt in range(10):
            label = int(rng.integers(0, len(spec.classes)))
            kind = spec.classes[label]
            size = float(np.exp(rng.uniform(log_lo, log_hi))) * scale
            mask = _shape_mask(kind, size, float(rng.uniform(0, 2 * math.pi)), rng)
            ys, xs = np.nonzero(mask > 0.5)
            if len(ys) == 0:
                continue
            my0, my1, mx0, mx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            # Position the tight box fully inside the image.
            by = int(rng.integers(0, max(1, h - (my1 - my0))))
            bx = int(rng.integers(0, max(1, w - (mx1 - mx0))))
            y0, x0 = by - my0, bx - mx0
            full = np.zeros((h, w), np.float32)
            mh, mw = mask.shape
            ys0, xs0, ye0, xe0 = max(0, y0), max(0, x0), min(h, y0 + mh), min(w, x0 + mw)
            full[ys0:ye0, xs0:xe0] = mask[ys0 - y0 : ye0 - y0, xs0 - x0 : xe0 - x0]
            if any((a > 0.5).sum() - ((a > 0.5) & (full > 0.5)).sum() < (1 - MAX_OCCLUDED) * ar
                   for a, ar in zip(alphas, areas, strict=True)):
                continue
            color = _object_colour(img, mask, y0, x0, rng, spec.min_contrast)
            _paste(img, mask, y0, x0, color)
            # Later objects may cover this one: earlier alphas keep only what stays visible.
            alphas = [np.where(full > 0.5, 0.0, a).astype(np.float32) for a in alphas]
            alphas.append(full)
            areas.append(float((full > 0.5).sum()))
            boxes.append((label, (bx + (mx1 - mx0) / 2) / w, (by + (my1 - my0) / 2) / h,
                          (mx1 - mx0) / w, (my1 - my0) / h))
            break
    for _ in range(rng.integers(*spec.clutter_over)):  # a little clutter on top too (small, so it occludes little)
        size = int(rng.uniform(4, 10) * scale)
        _paste(img, _distractor(size, rng), int(rng.integers(0, h)), int(rng.integers(0, w)),
               rng.uniform(0, 1, size=3).astype(np.float32))
    labels = np.array(boxes, dtype=np.float32).reshape(-1, 5)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), labels
