"""One video's export folder: the writers of ``config.export`` fed frame by frame, then ``labels.json``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vidseg.config import VidsegConfig
from vidseg.errors import ConfigError
from vidseg.export import HEATMAP_FILE, PREVIEW_FILE, SALIENCY_FILE, make_writers
from vidseg.export.heatmap import HeatmapVideoWriter, PreviewSheet
from vidseg.export.summary import ClassSummary
from vidseg.files import atomic_dir, write_error
from vidseg.postprocess import iter_labels
from vidseg.progress import NoProgress, Progress
from vidseg.version import __version__

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult


def export_labels(
    result: SaliencyResult,
    out_dir: str | Path,
    config: VidsegConfig,
    *,
    progress: Progress | None = None,
    frame_names: Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    flat: bool = False,
    model_name: str = "",
    workers: int | None = None,
) -> Path:
    """Write the labels of ``iter_labels`` for every frame (or only ``frame_names``) of ``result``'s video.

    ``out_dir`` is written atomically (temporary sibling folder renamed on success) and holds the masks of
    ``config.export.format`` (in ``masks/``, or directly in ``out_dir`` when ``flat``, the VSPW prediction layout),
    ``labels.json``, ``saliency.npz`` and, unless ``flat``, ``overlay.mp4``. ``frame_names`` restricts the output
    to those frames (e.g. the GT-annotated ones); ``size`` (height, width) resizes masks (e.g. to the GT's size).
    The ``vspw`` format has no background: every pixel gets one of the classes, as evaluation requires.
    ``workers`` overrides ``config.export.workers`` (see ``iter_labels``).
    """
    progress = progress or NoProgress()
    out_dir = Path(out_dir)
    fmt = config.export.format
    info = result.info
    names = list(info.frame_names)
    if frame_names is None:
        indices = np.arange(info.num_frames)
    else:
        lookup = {n: i for i, n in enumerate(names)}
        missing = [n for n in frame_names if n not in lookup]
        if missing:
            raise ConfigError(f"frames {missing[:3]} are not in {result.source}; check the dataset layout")
        indices = np.array([lookup[n] for n in frame_names], dtype=np.int64)

    labels_config = config
    if fmt == "vspw":  # no background: every pixel gets one of the classes
        labels_config = copy.deepcopy(config)
        labels_config.probs.background = None
    try:
        with atomic_dir(out_dir) as tmp:
            writers = make_writers(
                fmt, tmp, result.classes, overlay=config.export.overlay and not flat, fps=info.fps, flat=flat,
                id_space=config.export.id_space, size=size,
            )
            views = [HeatmapVideoWriter(tmp / HEATMAP_FILE, result.classes, info.fps),
                     PreviewSheet(tmp / PREVIEW_FILE, result.classes, indices)] if (
                config.export.heatmaps and not flat) else []
            summary = ClassSummary(result.classes, result.sampled.numpy())
            progress.start("refine + export", total=len(indices))
            for idx, labels, frame, probs in iter_labels(result, labels_config, frame_indices=indices,
                                                         workers=workers):
                for writer in writers:
                    writer.add(idx, names[idx], labels, frame)
                for view in views:  # they need the probabilities too
                    view.add(idx, names[idx], labels, frame, probs)
                summary.add(labels)
                progress.advance()
            for writer in [*writers, *views]:
                writer.close()
            result.save(tmp / SALIENCY_FILE)
            _write_labels_json(tmp / "labels.json", result, config, model_name, summary.as_dict())
            progress.finish()
    except OSError as exc:  # the disk filled up, or a write failed: atomic_dir has removed the temporary folder
        raise write_error(exc, out_dir.parent) from None
    return out_dir


def _write_labels_json(path: Path, result: SaliencyResult, config: VidsegConfig, model_name: str,
                       summary: dict[str, dict[str, float | int]]) -> None:
    doc = {
        "labels": {"0": "background", **{str(i + 1): c for i, c in enumerate(result.classes)}},
        "classes": summary,
        "video": str(result.source),
        "num_frames": result.info.num_frames,
        "fps": result.info.fps,
        "size": [result.info.height, result.info.width],
        "model": model_name,
        "prompt": result.prompt,
        "readout_timestep": result.timestep,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "vidseg_version": __version__,
        "settings": config.to_dict(),
    }
    path.write_text(json.dumps(doc, indent=2))
