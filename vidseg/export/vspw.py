"""VSPW label PNGs: what the official evaluation reads (``reference.md`` §3.6).

One single-channel 'L' PNG per GT mask frame, ``dir/<mask stem>.png``, at the GT's size, holding VSPW class values
(0..123 contiguous or 1..124 raw). Never 255: a 255 at a scored pixel silently aliases into another cell of the
official confusion matrix or crashes it (§3.7), so pixels no class claims are resolved to a class first.

Background resolution: a background pixel (label 0) takes the label of the nearest claimed pixel of the same frame
(Euclidean distance, chamfer-approximated). A frame with no claimed pixel at all takes the class this writer has
written most pixels of so far, or the first class if it is the video's first frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vidseg.datasets.vspw import check_id_space, export_id_range, label_to_vspw_ids
from vidseg.errors import ConfigError
from vidseg.export._labels import check_labels, resize_labels
from vidseg.export.writer import ExportLayout, Writer


def resolve_background(labels: np.ndarray, fallback: int) -> np.ndarray:
    """Replace every 0 in ``labels`` ``[H, W]`` uint8 by the nearest non-zero label; all-zero maps get ``fallback``.

    Distances are OpenCV's 5x5 chamfer approximation of the Euclidean distance (4x faster than an exact transform
    at 480p; the two disagree only on near-ties).
    """
    claimed = labels != 0
    if claimed.all():
        return labels
    if not claimed.any():
        return np.full_like(labels, fallback)
    # Every claimed pixel is a seed with its own index; each pixel gets the index of its nearest seed [H, W].
    _, nearest = cv2.distanceTransformWithLabels(
        (~claimed).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    label_of_seed = np.zeros(int(nearest.max()) + 1, dtype=labels.dtype)
    label_of_seed[nearest[claimed]] = labels[claimed]
    return label_of_seed[nearest]


class VspwMaskWriter(Writer):
    """Streams ``dir/<name>.png`` VSPW label PNGs.

    Args:
        out_dir: folder the PNGs go to (named by the GT mask stems the pipeline passes as ``name``).
        label_to_id: ``[C + 1]`` integers: entry k is the VSPW value of label k (the k-th class); entry 0 is the
            background's value, or -1 to resolve background pixels to the nearest class (see the module docstring).
            ``vidseg.datasets.vspw.label_to_vspw_ids`` builds it from class names.
        id_space: ``contiguous`` (values 0..123) or ``raw`` (1..124); values outside are refused.
        size: (height, width) of the GT; maps are resized with nearest neighbour. ``None`` keeps their size.
    """

    consumes = frozenset({"labels"})
    uses_background = False  # VSPW scores every pixel: each gets one of the classes

    def __init__(
        self,
        out_dir: str | Path,
        label_to_id: np.ndarray,
        *,
        id_space: str = "contiguous",
        size: tuple[int, int] | None = None,
    ):
        lut = np.asarray(label_to_id, dtype=np.int64)
        low, high = export_id_range(check_id_space(id_space))
        if lut.ndim != 1 or len(lut) < 2:
            raise ValueError(f"label_to_id must be [C + 1] values (background, then C classes), got {lut.shape}")
        valid = (lut >= low) & (lut <= high)
        valid[0] |= lut[0] == -1
        if not valid.all():
            bad = lut[~valid].tolist()
            raise ValueError(f"label_to_id holds {bad}, outside the {id_space} VSPW ids {low}..{high}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.size = size
        self._resolve = bool(lut[0] == -1)
        self._lut = np.maximum(lut, 0).astype(np.uint8)  # entry 0 is unused when background is resolved
        self._label_pixels = np.zeros(len(lut), dtype=np.int64)  # pixels written per label, for the fallback

    def add(self, frame_idx: int, name: str, labels: np.ndarray, frame: np.ndarray | None = None) -> None:
        labels = check_labels(labels)
        num_labels = len(self._lut)
        if labels.size and int(labels.max()) >= num_labels:
            raise ValueError(f"frame {name}: label {int(labels.max())} has no class (only {num_labels - 1} classes)")
        if self._resolve:
            fallback = int(np.argmax(self._label_pixels[1:])) + 1  # first class while nothing is written yet
            labels = resolve_background(labels, fallback)
        labels = resize_labels(labels, self.size)
        self._label_pixels += np.bincount(labels.ravel(), minlength=num_labels)
        Image.fromarray(self._lut[labels]).save(self.out_dir / f"{name}.png")


def vspw_writers(layout: ExportLayout) -> list[Writer]:
    """The ``vspw`` format: ``masks/<frame>.png`` of VSPW values (see ``ExportLayout`` for ``label_to_id``)."""
    label_to_id = layout.label_to_id
    if label_to_id is None:
        label_to_id = label_to_vspw_ids(layout.class_names, layout.id_space)
    if len(label_to_id) != len(layout.class_names) + 1:
        raise ConfigError(
            f"label_to_id has {len(label_to_id)} entries for {len(layout.class_names)} classes; it needs one per "
            "class plus one for background"
        )
    return [VspwMaskWriter(layout.masks_dir, label_to_id, id_space=layout.id_space, size=layout.size)]
