"""``vidseg label`` without ``--ray``: the dataset labeling run in this process, the model one video ahead of the
export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from vidseg.datasets.sources import DatasetVideo
from vidseg.runners.plan import export_dataset_video, plan_labels
from vidseg.runners.resumable import LabelEvent, LabelSummary, label_dataset


def label_videos(
    segmenter: Any,
    videos: Sequence[DatasetVideo],
    out_dir: str | Path,
    *,
    classes: Sequence[str] | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: Any = None,
    on_event: Callable[[LabelEvent], None] | None = None,
    vocabulary: str | None = None,
) -> LabelSummary:
    """Label a dataset with a ``VideoSegmenter`` in this process: what ``vidseg label`` runs without ``--ray``.

    Each video of ``shard`` that is not complete in ``out_dir`` is segmented with ``classes`` (None: the VSPW
    classes of its GT masks; ``vocabulary`` names the vocabulary they are, for the log) and written by
    ``label_dataset`` (resumable, atomic). The model computes the next
    pending video's saliency while the current one is refined and written. The export format, id space and the
    rest come from the segmenter's config (``plan_labels``, ``export_dataset_video``).
    """
    config = segmenter.config
    if classes is not None:  # a fixed list the model cannot read fails once, before any video
        segmenter.model.check_settings(config, list(classes))
    plan = plan_labels(config, videos, out_dir, classes=classes, shard=shard, vocabulary=vocabulary)
    pending = plan.pending
    results = segmenter.iter_saliency([(v.source, plan.classes[v.name]) for v in pending], progress=progress)

    def segment_video(video: DatasetVideo, folder: Path) -> None:
        index, result = next(results)
        if pending[index].name != video.name:
            raise RuntimeError(f"labeling order changed: expected {pending[index].name}, got {video.name}")
        if isinstance(result, Exception):
            raise result
        export_dataset_video(result, video, folder, config, flat=plan.flat, model_name=str(segmenter.model.source),
                             progress=progress)

    try:
        return label_dataset(videos, out_dir, segment_video, shard=shard, on_event=on_event,
                             fingerprint=plan.fingerprint, expected_files=plan.expected_files,
                             protocol=plan.protocol)
    finally:
        results.close()
