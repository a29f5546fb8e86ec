"""Writers of a video's outputs, one format or view per module, fed by ``vidseg.export.run``.

Every writer declares what it ``consumes`` (the raw maps, the frames, the class probabilities or the labels; see
``vidseg.export.writer.Writer``) and the export computes only that. ``make_writers`` builds them under a folder the
caller gives (the export makes that folder atomic) for ``predict`` and ``label`` alike; the format's writers come
from ``vidseg.registry.EXPORT_FORMATS``:

==========  =======================================================================================================
format      files (``flat``: masks directly in the folder, as the VSPW evaluation reads them; else under ``masks/``)
==========  =======================================================================================================
palette     ``masks/<frame>.png``: 8-bit palette PNG, pixel = label (0 = background, k = k-th class)
vspw        ``masks/<frame>.png``: single-channel PNG of VSPW class values, background resolved, never 255
coco        ``coco_rle.json``: COCO RLE record per (frame, class present)
npz         no label files: only ``saliency.npz`` (the raw maps), which every export folder holds
==========  =======================================================================================================

Views beside them, each on its switch: ``overlay`` (``overlay.mp4``) and ``heatmaps`` (``saliency.mp4`` and
``preview.png``, ``vidseg.export.heatmap``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vidseg.registry import EXPORT_FORMATS
from vidseg.export.coco import COCO_FILE, CocoRleWriter
from vidseg.export.heatmap import HEATMAP_FILE, PREVIEW_FILE, heatmap_writers
from vidseg.export.npz import SALIENCY_FILE, SaliencyNpzWriter, read_saliency_npz, write_saliency_npz
from vidseg.export.overlay import OVERLAY_FILE, OverlayVideoWriter, overlay_writers
from vidseg.export.palette import PaletteMaskWriter, voc_palette
from vidseg.export.vspw import VspwMaskWriter, resolve_background
from vidseg.export.writer import MASKS_DIR, ExportLayout, Writer

__all__ = [
    "Writer", "ExportLayout", "make_writers", "PaletteMaskWriter", "VspwMaskWriter", "CocoRleWriter",
    "OverlayVideoWriter", "SaliencyNpzWriter", "write_saliency_npz", "read_saliency_npz", "voc_palette",
    "resolve_background", "MASKS_DIR", "COCO_FILE", "OVERLAY_FILE", "SALIENCY_FILE", "HEATMAP_FILE", "PREVIEW_FILE",
]


def make_writers(
    fmt: str,
    out_dir: str | Path,
    class_names: Sequence[str],
    *,
    overlay: bool = False,
    heatmaps: bool = False,
    fps: float = 8.0,
    label_to_id: np.ndarray | None = None,
    flat: bool = False,
    id_space: str = "contiguous",
    size: tuple[int, int] | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
) -> list[Writer]:
    """The writers of export format ``fmt`` and of the views switched on (see the module docstring), under
    ``out_dir``; the other arguments are ``ExportLayout``'s (``frame_indices`` is needed for ``heatmaps``)."""
    layout = ExportLayout(Path(out_dir), list(class_names), fps=fps, flat=flat, size=size, id_space=id_space,
                          label_to_id=label_to_id, frame_indices=frame_indices)
    # Views are on/off switches, not choices by name: they are listed here, not in a registry.
    views = [make for make, on in ((overlay_writers, overlay), (heatmap_writers, heatmaps)) if on]
    return [writer for make in [EXPORT_FORMATS.load(fmt), *views] for writer in make(layout)]
