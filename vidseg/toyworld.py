"""A toy world with known truth: clips of moving filled shapes, their label maps and a caption, from a seed.

Classes are ``circle``, ``square``, ``triangle`` and ``star`` (label ids 1..4; 0 is background). A clip holds 1-3
objects of distinct shapes, each a uniform colour drawn without repetition from ten named colours, so colour never
identifies the shape. Sizes and speeds are given at a 128-pixel frame height and scale with it: diameter 18-40 % of
the height, constant velocity of 2-7 px per frame, reflected at the borders; each polygon keeps a random rotation,
and later objects are drawn over earlier ones. The background is a two-colour linear gradient at a random angle
plus Gaussian pixel noise (sigma 6). Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 215, 40),
    "purple": (140, 50, 170), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (15, 15, 15),
    "pink": (245, 130, 190), "cyan": (40, 210, 225),
}
REFERENCE_HEIGHT = 128  # sizes and speeds below are in pixels at this frame height
DIAMETER_RANGE = (0.18, 0.40)  # of the frame height
SPEED_RANGE = (2.0, 7.0)  # pixels per frame at REFERENCE_HEIGHT
NOISE_SIGMA = 6.0


@dataclass(frozen=True)
class ToyObject:
    """One shape: its class, colour, diameter (px), rotation (rad), start centre ``(x, y)`` and velocity (px/frame)."""

    shape: str
    colour: str
    diameter: float
    rotation: float
    start: tuple[float, float]
    velocity: tuple[float, float]


@dataclass
class ToyClip:
    """A rendered clip: ``frames`` uint8 ``[T, H, W, 3]``, ``labels`` uint8 ``[T, H, W]`` (0 background, 1 + index
    into ``SHAPES``), the objects in drawing order and the caption naming them."""

    frames: np.ndarray
    labels: np.ndarray
    objects: list[ToyObject]
    caption: str

    @property
    def classes(self) -> list[str]:
        """The shapes in the clip, in drawing order."""
        return [o.shape for o in self.objects]


def shape_label(shape: str) -> int:
    """Label id of a shape in the toy world's label maps."""
    return SHAPES.index(shape) + 1


def caption_for(objects: list[ToyObject]) -> str:
    """``"a red circle and an orange square"``: the objects in words, in drawing order."""
    phrases = [f"{'an' if o.colour[0] in 'aeiou' else 'a'} {o.colour} {o.shape}" for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def sample_objects(rng: np.random.Generator, height: int, width: int, num_objects: int | None = None) -> list[ToyObject]:
    """Draw 1-3 objects (or ``num_objects``) of distinct shapes and colours for a ``height x width`` frame."""
    count = int(rng.integers(1, 4)) if num_objects is None else num_objects
    if not 1 <= count <= len(SHAPES):
        raise ValueError(f"a toy clip holds 1 to {len(SHAPES)} objects, not {count}")
    shapes = rng.choice(len(SHAPES), size=count, replace=False)
    colours = rng.choice(len(COLOURS), size=count, replace=False)
    scale = height / REFERENCE_HEIGHT
    objects = []
    for s, c in zip(shapes, colours):
        diameter = float(rng.uniform(*DIAMETER_RANGE)) * height
        radius = diameter / 2
        start = (float(rng.uniform(radius, max(radius, width - radius))),
                 float(rng.uniform(radius, max(radius, height - radius))))
        speed = float(rng.uniform(*SPEED_RANGE)) * scale
        angle = float(rng.uniform(0, 2 * np.pi))
        objects.append(ToyObject(
            shape=SHAPES[s], colour=list(COLOURS)[c], diameter=diameter,
            rotation=float(rng.uniform(0, 2 * np.pi)), start=start,
            velocity=(speed * np.cos(angle), speed * np.sin(angle)),
        ))
    return objects


def _bounce(start: float, velocity: float, t: int, low: float, high: float) -> float:
    """Position at frame t of a point moving at constant speed, reflected at ``low`` and ``high``."""
    span = high - low
    if span <= 0:
        return low
    x = (start - low + velocity * t) % (2 * span)
    return low + (x if x <= span else 2 * span - x)


def _polygon(shape: str, radius: float, rotation: float) -> np.ndarray:
    """Vertices ``[V, 2]`` (x, y) around the origin; the circumradius is ``radius``."""
    if shape == "square":
        angles, radii = np.arange(4) * np.pi / 2 + np.pi / 4, np.full(4, radius)
    elif shape == "triangle":
        angles, radii = np.arange(3) * 2 * np.pi / 3 - np.pi / 2, np.full(3, radius)
    elif shape == "star":  # five points, inner radius 0.4 of the outer
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.4 * radius)
    else:
        raise ValueError(f"{shape!r} is not a polygon shape")
    angles = angles + rotation
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def shape_mask(shape: str, centre: tuple[float, float], diameter: float, rotation: float,
               height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: pixels whose centre lies inside the shape."""
    ys, xs = np.mgrid[0:height, 0:width]
    px, py = xs + 0.5 - centre[0], ys + 0.5 - centre[1]
    radius = diameter / 2
    if shape == "circle":
        return px * px + py * py <= radius * radius
    return _inside_polygon(px, py, _polygon(shape, radius, rotation))


def _inside_polygon(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray to +x crosses the polygon's edges an odd number of times."""
    inside = np.zeros(px.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if y0 == y1:
            continue
        straddles = (py >= min(y0, y1)) & (py < max(y0, y1))
        crossing_x = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= straddles & (px < crossing_x)
    return inside


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float ``[H, W, 3]``: a linear gradient between two random colours at a random angle."""
    a, b = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    proj = (xs - width / 2) * np.cos(angle) + (ys - height / 2) * np.sin(angle)
    span = max(np.ptp(proj), 1e-6)
    w = ((proj - proj.min()) / span)[..., None]
    return (1 - w) * a + w * b


def render_clip(seed: int, *, num_frames: int = 24, height: int = 128, width: int = 192,
                num_objects: int | None = None) -> ToyClip:
    """Render the clip of ``seed``: frames, label maps, objects and caption (see the module docstring)."""
    if num_frames < 1 or height < 8 or width < 8:
        raise ValueError(f"a toy clip needs at least 1 frame of 8 x 8 pixels, not {num_frames} x {height} x {width}")
    rng = np.random.default_rng(seed)
    objects = sample_objects(rng, height, width, num_objects)
    background = _background(rng, height, width)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), dtype=np.uint8)
    for t in range(num_frames):
        image = background.copy()
        for o in objects:
            r = o.diameter / 2
            centre = (_bounce(o.start[0], o.velocity[0], t, r, width - r),
                      _bounce(o.start[1], o.velocity[1], t, r, height - r))
            mask = shape_mask(o.shape, centre, o.diameter, o.rotation, height, width)
            image[mask] = COLOURS[o.colour]
            labels[t][mask] = shape_label(o.shape)
        image += rng.normal(0, NOISE_SIGMA, size=image.shape)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return ToyClip(frames=frames, labels=labels, objects=objects, caption=caption_for(objects))


def write_toy_clip(path: str | Path, clip: ToyClip, *, fps: float = 8.0) -> tuple[Path, Path]:
    """Write ``clip`` as an H.264 video at ``path`` and its label maps beside it (``<stem>_masks/00000.png`` ...,
    single-channel, value = label id, with ``classes.txt``); both atomically. Returns (video path, masks folder)."""
    import os
    import tempfile

    from PIL import Image

    from vidseg.errors import OutputError
    from vidseg.export.overlay import OverlayVideoWriter
    from vidseg.files import atomic_dir

    path = Path(path)
    masks_dir = path.with_name(f"{path.stem}_masks")
    with atomic_dir(masks_dir) as tmp:
        for t, labels in enumerate(clip.labels):
            Image.fromarray(labels).save(tmp / f"{t:05d}.png")
        (tmp / "classes.txt").write_text("\n".join(("background",) + SHAPES) + "\n")
    try:
        fd, tmp_video = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".mp4", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable folder") from None
    try:
        writer = OverlayVideoWriter(tmp_video, [], fps)  # no classes: the frames as they are
        for t, frame in enumerate(clip.frames):
            writer.add(t, f"{t:05d}", np.zeros(frame.shape[:2], dtype=np.uint8), frame)
        writer.close()
        os.replace(tmp_video, path)
    except BaseException:
        Path(tmp_video).unlink(missing_ok=True)
        raise
    return path, masks_dir


def class_ious(predicted: np.ndarray, truth: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """IoU over all frames of each class given, against toy-world truth.

    Args:
        predicted: ``[T, H, W]`` labels as vidseg writes them (0 background, i = the i-th of ``classes``).
        truth: ``[T, H, W]`` toy-world labels (0 background, ``shape_label(shape)``).
        classes: the class names the prediction was asked for.

    Returns:
        class -> IoU for the shapes present in ``truth``; None for a class absent from ``truth`` (or not a toy
        shape), which scores no IoU (whether it claimed pixels is ``absent_pixels``' business).
    """
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction {predicted.shape} and truth {truth.shape} differ in shape")
    scores: dict[str, float | None] = {}
    for i, name in enumerate(classes, start=1):
        if name not in SHAPES or not (truth == shape_label(name)).any():
            scores[name] = None
            continue
        t, p = truth == shape_label(name), predicted == i
        scores[name] = float((t & p).sum() / (t | p).sum())
    return scores


def absent_pixels(predicted: np.ndarray, truth: np.ndarray, classes: list[str]) -> dict[str, int]:
    """Pixels claimed by each class that is absent from ``truth`` (should be 0)."""
    return {name: int((predicted == i).sum()) for i, name in enumerate(classes, start=1)
            if name not in SHAPES or not (truth == shape_label(name)).any()}
