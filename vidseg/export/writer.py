"""What an export writer is: the ``Writer`` base (what it consumes, how it is fed) and ``ExportLayout`` (the folder
and settings every writer factory builds its writers from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

MASKS_DIR = "masks"
# The video's SaliencyResult, as a writer's consumption; the others are vidseg.postprocess.FRAME_OUTPUTS.
MAPS = "maps"


class Writer:
    """One output of an export folder: mask files, a video, a contact sheet, the maps themselves.

    ``consumes`` declares what the writer is fed, and the export computes only what its writers consume:

    * ``"maps"``: the video's ``SaliencyResult`` (the raw class maps), once, through ``add_maps(result)``;
    * ``"frame"`` (``[H, W, 3]`` uint8 RGB), ``"probs"`` (``[C + 1, h, w]`` float32 class probabilities at the token
      grid, index 0 background) and ``"labels"`` (``[H, W]`` uint8, 0 = background, k = the k-th class): per output
      frame, as the keyword arguments of ``add(frame_idx, name, **consumed)`` (``vidseg.postprocess.FrameOutputs``).

    Labels cost the most (probabilities, then upsampling and the CRF, both guided by the frame); a folder whose
    writers consume only ``"maps"`` is written with no post-processing at all. ``close()`` finishes the output
    (some writers write only then), once.
    """

    consumes: ClassVar[frozenset[str]]
    # False: the labels fed are made with no background class, so every pixel gets one (what VSPW scoring needs).
    uses_background: ClassVar[bool] = True

    def close(self) -> None:
        pass


@dataclass
class ExportLayout:
    """Where and how one video's writers write (``make_writers`` builds one; every writer factory takes it).

    Attributes:
        out_dir: the folder written into (the export makes it atomic).
        class_names: in label order (label k is ``class_names[k - 1]``).
        fps: frame rate of the videos written.
        flat: masks directly in ``out_dir`` (the VSPW prediction layout) instead of ``out_dir/masks``.
        size: (height, width) every mask is resized to (nearest neighbour), e.g. the GT's; None keeps it.
        id_space: vspw only: ``contiguous`` (0..123) or ``raw`` (1..124).
        label_to_id: vspw only: ``[C + 1]`` VSPW values of labels 0..C (entry 0 = -1: resolve background); None
            builds it from ``class_names``, which must then be VSPW classes (raw names or prompt forms).
        frame_indices: the frames that will be fed, in order (``preview.png`` picks its rows among them).
    """

    out_dir: Path
    class_names: Sequence[str]
    fps: float = 8.0
    flat: bool = False
    size: tuple[int, int] | None = None
    id_space: str = "contiguous"
    label_to_id: np.ndarray | None = None
    frame_indices: Sequence[int] | np.ndarray | None = None

    @property
    def masks_dir(self) -> Path:
        return self.out_dir if self.flat else self.out_dir / MASKS_DIR


# A format's or a view's writers for one video: what ``EXPORT_FORMATS`` targets are, and the views' factories.
WriterFactory = Callable[[ExportLayout], list[Writer]]
