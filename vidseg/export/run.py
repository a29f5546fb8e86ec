"""One video's export folder: its writers fed what they consume, then ``labels.json``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vidseg.config import VidsegConfig
from vidseg.errors import ConfigError
from vidseg.export import SALIENCY_FILE, SaliencyNpzWriter, Writer, make_writers
from vidseg.export.summary import ClassSummary
from vidseg.export.writer import MAPS
from vidseg.files import atomic_dir, write_error
from vidseg.postprocess import FRAME_OUTPUTS, iter_frame_outputs
from vidseg.presence import decide_presence
from vidseg.progress import NoProgress, Progress
from vidseg.version import __version__

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult

LABELS_FILE = "labels.json"


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
    """Write the outputs of ``config.export`` for every frame (or only ``frame_names``) of ``result``'s video.

    ``out_dir`` is written atomically (temporary sibling folder renamed on success) and holds the masks of
    ``config.export.format`` (in ``masks/``, or directly in ``out_dir`` when ``flat``, the VSPW prediction layout),
    ``labels.json``, ``saliency.npz`` and, unless ``flat``, the views switched on (``overlay.mp4``, ``saliency.mp4``
    and ``preview.png``). Only what those writers consume is computed (``feed_writers``): ``npz`` with no views
    needs no post-processing, and its ``labels.json`` summary then holds peak saliency only. ``frame_names``
    restricts the output to those frames (e.g. the GT-annotated ones); ``size`` (height, width) resizes masks (e.g.
    to the GT's size). The ``vspw`` format has no background: every pixel gets one of the classes, as evaluation
    requires. ``workers`` overrides ``config.export.workers`` (see ``vidseg.postprocess.iter_frame_outputs``).
    """
    out_dir = Path(out_dir)
    export = config.export
    indices = frame_indices_of(result, frame_names)
    try:
        with atomic_dir(out_dir) as tmp:
            writers = [SaliencyNpzWriter(tmp / SALIENCY_FILE), *make_writers(
                export.format, tmp, result.classes, overlay=export.overlay and not flat,
                heatmaps=export.heatmaps and not flat, fps=result.info.fps, flat=flat, id_space=export.id_space,
                size=size, frame_indices=indices,
            )]
            summary = feed_writers(result, writers, config, indices, progress=progress, workers=workers)
            _write_labels_json(tmp / LABELS_FILE, result, config, model_name, summary.as_dict())
    except OSError as exc:  # the disk filled up, or a write failed: atomic_dir has removed the temporary folder
        raise write_error(exc, out_dir.parent) from None
    return out_dir


def feed_writers(
    result: SaliencyResult,
    writers: Sequence[Writer],
    config: VidsegConfig,
    frame_indices: Sequence[int] | np.ndarray,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ClassSummary:
    """Give each writer what it consumes (``vidseg.export.writer.Writer``), computing nothing more, and close it.

    Maps consumers get ``result`` first; then, if any writer consumes per-frame outputs, post-processing runs on
    ``frame_indices`` (in that order) and each writer gets its share of every frame. Returns the class summary,
    which counts labels only when some writer needed them (it never makes labels by itself).
    """
    progress = progress or NoProgress()
    for writer in writers:
        unknown = writer.consumes - FRAME_OUTPUTS - {MAPS}
        if unknown:
            raise ValueError(f"{type(writer).__name__} consumes {sorted(unknown)}; a writer consumes "
                             f"{sorted(FRAME_OUTPUTS | {MAPS})}")
    needs = frozenset().union(*(writer.consumes for writer in writers))
    if not all(writer.uses_background for writer in writers):  # vspw: every pixel gets one of the classes
        config = copy.deepcopy(config)
        config.probs.background = None
    presence = decide_presence(result, config.presence.threshold, config.presence.peak_share)
    summary = ClassSummary(result.classes, result.sampled.numpy(), presence, with_labels="labels" in needs)
    frame_writers = [writer for writer in writers if writer.consumes & FRAME_OUTPUTS]
    progress.start("refine + export" if "labels" in needs else "export",
                   total=len(frame_indices) if frame_writers else None)
    for writer in writers:
        if MAPS in writer.consumes:
            writer.add_maps(result)
    if frame_writers:
        names = result.info.frame_names
        for out in iter_frame_outputs(result, config, outputs=needs & FRAME_OUTPUTS, frame_indices=frame_indices,
                                      workers=workers, presence=presence):
            for writer in frame_writers:
                consumed = {key: getattr(out, key) for key in writer.consumes & FRAME_OUTPUTS}
                writer.add(out.frame_idx, names[out.frame_idx], **consumed)
            if out.labels is not None:
                summary.add(out.labels)
            progress.advance()
    for writer in writers:
        writer.close()
    progress.finish()
    return summary


def frame_indices_of(result: SaliencyResult, frame_names: Sequence[str] | None) -> np.ndarray:
    """The indices of ``frame_names`` in ``result``'s video (all frames when None)."""
    if frame_names is None:
        return np.arange(result.info.num_frames)
    lookup = {n: i for i, n in enumerate(result.info.frame_names)}
    missing = [n for n in frame_names if n not in lookup]
    if missing:
        raise ConfigError(f"frames {missing[:3]} are not in {result.source}; check the dataset layout")
    return np.array([lookup[n] for n in frame_names], dtype=np.int64)


def _write_labels_json(path: Path, result: SaliencyResult, config: VidsegConfig, model_name: str,
                       summary: dict[str, dict[str, float | int]]) -> None:
    doc = {
        "labels": {"0": "background", **{str(i + 1): c for i, c in enumerate(result.classes)}},
        "classes": summary,
        "video": str(result.source),
        "num_frames": result.info.num_frames,
        "fps": result.info.fps,
        "size": [result.info.height, result.info.width],
        "range": result.info.source_range(),  # where these frames lie in the source (--start / --end)
        "model": model_name,
        "prompt": result.prompt,
        "readout_timestep": result.timestep,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "vidseg_version": __version__,
        "settings": config.to_dict(),
    }
    path.write_text(json.dumps(doc, indent=2))
