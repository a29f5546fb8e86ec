"""A toy world with known truth: clips of moving filled shapes, their label maps and a caption, from a seed.

Classes are ``circle``, ``square``, ``triangle`` and ``star`` (label ids 1..4; 0 is background). A clip holds 1-3
objects of distinct shapes, each a uniform colour drawn without repetition from ten named colours, so colour never
identifies the shape. Sizes and speeds are given at a 128-pixel frame height and scale with it: diameter 18-40 % of
the height, constant velocity of 2-7 px per frame, reflected at the borders; each polygon keeps a random rotation,
and later objects are drawn over earlier ones. The background is a two-colour linear gradient at a random angle
plus Gaussian pixel noise (sigma 6). Everything is a pure function of the seed.

Motion clips (``render_motion_clip``) move on cue instead: each object gets one verb of ``VERBS`` or none.
``sliding`` translates at constant velocity (2-7 px per frame at 128 px height, reflected at the borders, no
rotation), ``spinning`` stays in place and rotates about its centre at 0.15-0.4 rad per frame (never a circle, whose
rotation shows nothing), and an object without a verb stays still throughout. A verb is performed during one
contiguous interval of frames covering 30-70 % of the clip (its first frame already shows the first step), frozen
before and after it; every motion clip has at least one verb. The truth adds, per verb, the visible pixels of the
objects performing it in each frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

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
VERBS = ("sliding", "spinning")
SPIN_RANGE = (0.15, 0.4)  # rad per frame
ACTIVE_SHARE = (0.3, 0.7)  # of the clip's frames, one contiguous interval per verb


@dataclass(frozen=True)
class ToyObject:
    """One shape: its class, colour, diameter (px), rotation (rad), start centre ``(x, y)`` and velocity (px/frame)."""

    shape: str
    colour: str
    diameter: float
    rotation: float
    start: tuple[float, float]
    velocity: tuple[float, float]
    verb: str | None = None  # motion clips: "sliding", "spinning" or None (still); plain clips: None
    active: tuple[int, int] | None = None  # first and last frame (inclusive) of the verb's interval
    spin: float = 0.0  # rad per frame while spinning

    def steps(self, t: int) -> int:
        """Steps of motion taken by frame ``t``: all frames for a plain clip's object, else those of the verb's
        interval so far (its first frame already shows one step)."""
        if self.active is None:
            return t
        first, last = self.active
        return min(max(t - first + 1, 0), last - first + 1)

    def performing(self, t: int) -> bool:
        """Whether a motion clip's object performs its verb in frame ``t``."""
        return self.verb is not None and self.active is not None and self.active[0] <= t <= self.active[1]


@dataclass
class ToyClip:
    """A rendered clip: ``frames`` uint8 ``[T, H, W, 3]``, ``labels`` uint8 ``[T, H, W]`` (0 background, 1 + index
    into ``SHAPES``), the objects in drawing order and the caption naming them."""

    frames: np.ndarray
    labels: np.ndarray
    objects: list[ToyObject]
    caption: str
    verbs: dict[str, np.ndarray] = field(default_factory=dict)  # motion clips: verb -> bool [T, H, W] truth

    @property
    def classes(self) -> list[str]:
        """The shapes in the clip, in drawing order."""
        return [o.shape for o in self.objects]

    @property
    def verb_names(self) -> list[str]:
        """The verbs performed in the clip, in ``VERBS`` order."""
        return [v for v in VERBS if v in self.verbs]

    def truth(self, concept: str) -> np.ndarray:
        """bool ``[T, H, W]``: a shape's or a verb's true pixels per frame (all False for anything else)."""
        if concept in self.verbs:
            return self.verbs[concept]
        if concept in SHAPES:
            return self.labels == shape_label(concept)
        return np.zeros(self.labels.shape, dtype=bool)

    def active_frames(self, verb: str) -> np.ndarray:
        """bool ``[T]``: the frames in which some object performs ``verb``."""
        return np.array([any(o.verb == verb and o.performing(t) for o in self.objects)
                         for t in range(len(self.frames))])


def shape_label(shape: str) -> int:
    """Label id of a shape in the toy world's label maps."""
    return SHAPES.index(shape) + 1


def caption_for(objects: list[ToyObject]) -> str:
    """``"a red circle and an orange square"``: the objects in words, in drawing order. With verbs (motion clips):
    ``"a red square spinning and a blue star sliding and a green circle"``."""
    phrases = [f"{'an' if o.colour[0] in 'aeiou' else 'a'} {o.colour} {o.shape}" + (f" {o.verb}" if o.verb else "")
               for o in objects]
    if any(o.verb for o in objects):
        return " and ".join(phrases)
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


def assign_verbs(rng: np.random.Generator, objects: list[ToyObject], num_frames: int) -> list[ToyObject]:
    """Give each object a verb or none (at least one verb per clip), its interval and its spin, for a clip of
    ``num_frames``; a spinning or still object keeps its place, a sliding one keeps its velocity."""
    choices = [[None, "sliding"] if o.shape == "circle" else [None, *VERBS] for o in objects]
    verbs = [c[int(rng.integers(len(c)))] for c in choices]
    if not any(verbs):
        i = int(rng.integers(len(objects)))
        verbs[i] = choices[i][1 + int(rng.integers(len(choices[i]) - 1))]
    out = []
    for o, verb in zip(objects, verbs):
        if verb is None:
            out.append(replace(o, velocity=(0.0, 0.0)))
            continue
        length = min(num_frames, max(1, int(round(rng.uniform(*ACTIVE_SHARE) * num_frames))))
        first = int(rng.integers(0, num_frames - length + 1))
        spin = float(rng.uniform(*SPIN_RANGE) * rng.choice([-1.0, 1.0])) if verb == "spinning" else 0.0
        out.append(replace(o, verb=verb, active=(first, first + length - 1), spin=spin,
                           velocity=o.velocity if verb == "sliding" else (0.0, 0.0)))
    return out


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
    _check_size(num_frames, height, width)
    rng = np.random.default_rng(seed)
    objects = sample_objects(rng, height, width, num_objects)
    return _render(rng, objects, num_frames, height, width)


def render_motion_clip(seed: int, *, num_frames: int = 24, height: int = 128, width: int = 192,
                       num_objects: int | None = None) -> ToyClip:
    """Render the motion clip of ``seed``: objects that slide or spin on cue, with the verbs' truth (see the module
    docstring). Seeds are their own stream: motion clip ``s`` is unrelated to ``render_clip(s)``."""
    _check_size(num_frames, height, width)
    rng = np.random.default_rng([seed, 1])
    objects = assign_verbs(rng, sample_objects(rng, height, width, num_objects), num_frames)
    return _render(rng, objects, num_frames, height, width)


def _check_size(num_frames: int, height: int, width: int) -> None:
    if num_frames < 1 or height < 8 or width < 8:
        raise ValueError(f"a toy clip needs at least 1 frame of 8 x 8 pixels, not {num_frames} x {height} x {width}")


def _render(rng: np.random.Generator, objects: list[ToyObject], num_frames: int, height: int, width: int) -> ToyClip:
    background = _background(rng, height, width)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), dtype=np.uint8)
    owner = np.full((num_frames, height, width), -1, dtype=np.int8)  # index of the object seen at each pixel
    for t in range(num_frames):
        image = background.copy()
        for i, o in enumerate(objects):
            r, steps = o.diameter / 2, o.steps(t)
            centre = (_bounce(o.start[0], o.velocity[0], steps, r, width - r),
                      _bounce(o.start[1], o.velocity[1], steps, r, height - r))
            mask = shape_mask(o.shape, centre, o.diameter, o.rotation + o.spin * steps, height, width)
            image[mask] = COLOURS[o.colour]
            labels[t][mask] = shape_label(o.shape)
            owner[t][mask] = i
        image += rng.normal(0, NOISE_SIGMA, size=image.shape)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    verbs = {}
    for verb in VERBS:
        if any(o.verb == verb for o in objects):
            verbs[verb] = np.zeros(owner.shape, dtype=bool)
            for t in range(num_frames):
                for i, o in enumerate(objects):
                    if o.verb == verb and o.performing(t):
                        verbs[verb][t] |= owner[t] == i
    return ToyClip(frames=frames, labels=labels, objects=objects, caption=caption_for(objects), verbs=verbs)


def write_toy_clip(path: str | Path, clip: ToyClip, *, fps: float = 8.0) -> tuple[Path, Path]:
    """Write ``clip`` as an H.264 video at ``path`` and its label maps beside it (``<stem>_masks/00000.png`` ...,
    single-channel, value = label id, with ``classes.txt``); both atomically. Returns (video path, masks folder).

    A motion clip also gets ``<stem>_motion/``: ``<verb>/00000.png`` ... (0 / 255, the pixels performing the verb
    in each frame) and ``motion.json`` (caption, each object's verb and interval, each verb's active frames)."""
    import json
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
    if clip.verbs:
        with atomic_dir(path.with_name(f"{path.stem}_motion")) as tmp:
            for verb, truth in clip.verbs.items():
                (tmp / verb).mkdir()
                for t, mask in enumerate(truth):
                    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / verb / f"{t:05d}.png")
            (tmp / "motion.json").write_text(json.dumps({
                "caption": clip.caption, "fps": fps, "num_frames": len(clip.frames),
                "objects": [{"shape": o.shape, "colour": o.colour, "verb": o.verb,
                             "active_frames": list(o.active) if o.verb else None} for o in clip.objects],
                "verbs": {v: np.flatnonzero(clip.active_frames(v)).tolist() for v in clip.verb_names},
            }, indent=2) + "\n")
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


def write_toy_dataset(root: str | Path, seeds: Sequence[int], *, num_frames: int = 24, height: int = 128,
                      width: int = 192) -> Path:
    """Write the clips of ``seeds`` as a VSPW-layout tree at ``root`` (atomically): ``data/toy<seed>/origin/*.png``
    frames, ``data/toy<seed>/mask/*.png`` labels (0 background, 1..4 the shapes), ``classes.txt`` (the shapes in
    mask-value order, the vocabulary file ``vidseg calibrate --classes-file`` takes) and ``val.txt`` listing every
    video. Frames are PNG, not VSPW's JPEG, so the shapes keep their flat colours; they are 8 frames a second."""
    from PIL import Image

    from vidseg.files import atomic_dir

    root = Path(root)
    with atomic_dir(root) as tmp:
        names = []
        for seed in seeds:
            clip = render_clip(seed, num_frames=num_frames, height=height, width=width)
            name = f"toy{seed}"
            (tmp / "data" / name / "origin").mkdir(parents=True)
            (tmp / "data" / name / "mask").mkdir()
            for t, (frame, labels) in enumerate(zip(clip.frames, clip.labels)):
                Image.fromarray(frame).save(tmp / "data" / name / "origin" / f"{t:08d}.png")
                Image.fromarray(labels).save(tmp / "data" / name / "mask" / f"{t:08d}.png")
            names.append(name)
        (tmp / "classes.txt").write_text("\n".join(SHAPES) + "\n")
        (tmp / "val.txt").write_text("\n".join(names) + "\n")
    return root
