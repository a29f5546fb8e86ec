"""What every labeling runner does the same way: which videos of the shard are pending, with which classes and
settings fingerprint, and how one dataset video's labels are written (the VSPW prediction layout)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vidseg.datasets.sources import DatasetVideo
from vidseg.datasets.vspw import gt_class_prompts
from vidseg.runners.resumable import is_complete, png_per_stem, shard_videos


def settings_fingerprint(config: Any, classes: Sequence[str] | None) -> str:
    """What makes a finished video folder valid for a rerun: every setting, and the fixed classes (None: from GT)."""
    doc = json.dumps([config.to_dict(), "gt" if classes is None else list(classes)], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


@dataclass
class LabelPlan:
    """What a labeling run of ``videos`` into ``out_dir`` has to do, the same for every runner.

    Attributes:
        videos: this shard's videos, in name order.
        pending: those not complete in ``out_dir`` under ``fingerprint``.
        classes: the class names of each pending video (by name): the fixed ones, or its GT's VSPW classes.
        fingerprint: ``settings_fingerprint`` of the run.
        flat: whether masks go flat into the video folder (``vspw`` / ``palette``: the VSPW prediction layout).
        protocol: which classes each video was asked for, as ``label_log.json`` records it (``class_protocol``).
    """

    out_dir: Path
    videos: list[DatasetVideo]
    pending: list[DatasetVideo]
    classes: dict[str, list[str]]
    fingerprint: str
    flat: bool
    protocol: dict[str, Any]

    def expected_files(self, video: DatasetVideo) -> list[str]:
        """Files the video's folder must hold: a PNG per output stem for the flat formats, else nothing fixed."""
        return png_per_stem(video) if self.flat else []


def class_protocol(config: Any, classes: Sequence[str] | None, vocabulary: str | None = None) -> dict[str, Any]:
    """How a run chose each video's classes, for its log and ``vidseg eval``: ``classes-from-gt`` (the classes in
    each video's GT: the oracle protocol), ``vocabulary`` (a dataset's whole class list, ``vocabulary`` naming it)
    or ``fixed classes`` (a user's list), with the presence threshold that kept classes out of videos."""
    if classes is None:
        doc: dict[str, Any] = {"name": "classes-from-gt"}
    elif vocabulary is not None:
        doc = {"name": "vocabulary", "vocabulary": vocabulary, "num_classes": len(classes)}
    else:
        doc = {"name": "fixed classes", "num_classes": len(classes)}
    return doc | {"presence_threshold": config.presence.threshold}


def plan_labels(
    config: Any, videos: Sequence[DatasetVideo], out_dir: str | Path, *, classes: Sequence[str] | None = None,
    shard: tuple[int, int] = (0, 1), vocabulary: str | None = None,
) -> LabelPlan:
    """The ``LabelPlan`` of labeling ``shard`` of ``videos`` with ``config`` (``classes`` None: from the GT;
    ``vocabulary``: the name of the vocabulary ``classes`` are, for the log)."""
    out_dir = Path(out_dir)
    plan = LabelPlan(out_dir, shard_videos(videos, shard), [], {}, settings_fingerprint(config, classes),
                     config.export.format in ("vspw", "palette"), class_protocol(config, classes, vocabulary))
    plan.pending = [v for v in plan.videos
                    if not is_complete(out_dir / v.name, plan.expected_files(v), plan.fingerprint)]
    plan.classes = {v.name: list(classes) if classes is not None else gt_class_prompts(v.mask_paths)
                    for v in plan.pending}
    return plan


def export_dataset_video(result: Any, video: DatasetVideo, folder: Path, config: Any, *, flat: bool,
                         model_name: str, progress: Any = None, workers: int | None = None) -> None:
    """Write one dataset video's labels into ``folder``: the GT-annotated frames (every frame without GT), at the
    GT's size, flat for the VSPW layout. Every runner writes a video through this (``workers``: see
    ``export_labels``)."""
    from vidseg.export.run import export_labels  # torch: loaded when a video is written, not when a run is planned

    export_labels(result, folder, config, progress=progress, frame_names=list(video.output_stems) or None,
                  size=video.gt_size, flat=flat, model_name=model_name, workers=workers)
