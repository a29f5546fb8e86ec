"""Writers for label maps, one format per module, fed frame by frame by the pipeline.

Every writer has ``add(frame_idx, name, labels, frame)`` and ``close()``; they write under a folder the caller gives
(the pipeline makes that folder atomic). ``make_writers`` picks them for ``predict`` and ``label`` alike:

==========  =======================================================================================================
format      files (``flat``: masks directly in the folder, as the VSPW evaluation reads them; else under ``masks/``)
==========  =======================================================================================================
palette     ``masks/<frame>.png``: 8-bit palette PNG, pixel = label (0 = background, k = k-th class)
vspw        ``masks/<frame>.png``: single-channel PNG of VSPW class values, background resolved, never 255
coco        ``coco_rle.json``: COCO RLE record per (frame, class present)
npz         no label files: the pipeline writes the soft saliency with ``write_saliency_npz`` (``saliency.npz``)
==========  =======================================================================================================

``overlay=True`` adds ``overlay.mp4``. Beside them the pipeline writes ``saliency.mp4`` and ``preview.png``
(``vidseg.export.heatmap``) unless the layout is flat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from vidseg.errors import ConfigError
from vidseg.registry import EXPORT_FORMATS
from vidseg.export.coco import CocoRleWriter
from vidseg.export.npz import read_saliency_npz, write_saliency_npz
from vidseg.export.overlay import OverlayVideoWriter
from vidseg.export.palette import PaletteMaskWriter, voc_palette
from vidseg.export.vspw import VspwMaskWriter, resolve_background

MASKS_DIR = "masks"
COCO_FILE = "coco_rle.json"
OVERLAY_FILE = "overlay.mp4"
SALIENCY_FILE = "saliency.npz"
HEATMAP_FILE = "saliency.mp4"
PREVIEW_FILE = "preview.png"

__all__ = [
    "MaskWriter", "make_writers", "PaletteMaskWriter", "VspwMaskWriter", "CocoRleWriter",
    "OverlayVideoWriter", "write_saliency_npz", "read_saliency_npz", "voc_palette", "resolve_background",
]


class MaskWriter(Protocol):
    """What the pipeline feeds: one call per output frame, then ``close()`` once."""

    def add(self, frame_idx: int, name: str, labels: np.ndarray, frame: np.ndarray | None = None) -> None:
        """``labels`` ``[H, W]`` uint8 (0 = background, k = k-th class); ``frame`` ``[H, W, 3]`` uint8 RGB or None."""

    def close(self) -> None: ...


def make_writers(
    fmt: str,
    out_dir: str | Path,
    class_names: Sequence[str],
    *,
    overlay: bool = False,
    fps: float = 8.0,
    label_to_id: np.ndarray | None = None,
    flat: bool = False,
    id_space: str = "contiguous",
    size: tuple[int, int] | None = None,
) -> list[MaskWriter]:
    """The writers for export format ``fmt`` (see the module docstring), all under ``out_dir``.

    Args:
        label_to_id: vspw only: ``[C + 1]`` VSPW values of labels 0..C (entry 0 = -1: resolve background); default
            built from ``class_names``, which must then be VSPW classes (raw names or prompt forms).
        flat: masks directly in ``out_dir`` instead of ``out_dir/masks``.
        id_space: vspw only: ``contiguous`` (0..123) or ``raw`` (1..124).
        size: (height, width) every mask is resized to (nearest neighbour), e.g. the GT's; None keeps it.
    """
    from vidseg.datasets.vspw import label_to_vspw_ids

    EXPORT_FORMATS.check(fmt)
    out_dir = Path(out_dir)
    masks_dir = out_dir if flat else out_dir / MASKS_DIR
    writers: list[MaskWriter] = []
    if fmt == "palette":
        writers.append(PaletteMaskWriter(masks_dir, size=size))
    elif fmt == "vspw":
        if label_to_id is None:
            label_to_id = label_to_vspw_ids(class_names, id_space)
        if len(label_to_id) != len(class_names) + 1:
            raise ConfigError(
                f"label_to_id has {len(label_to_id)} entries for {len(class_names)} classes; it needs one per class "
                "plus one for background"
            )
        writers.append(VspwMaskWriter(masks_dir, label_to_id, id_space=id_space, size=size))
    elif fmt == "coco":
        writers.append(CocoRleWriter(out_dir / COCO_FILE, class_names, size=size))
    if overlay:
        writers.append(OverlayVideoWriter(out_dir / OVERLAY_FILE, class_names, fps))
    return writers
