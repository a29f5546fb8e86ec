"""Datasets: VSPW classes and id conventions, dataset discovery, and the resumable dataset labeling runner."""

from vidseg.datasets.label import (
    LabelEvent, LabelSummary, VideoOutcome, is_complete, label_dataset, label_videos, parse_shard, png_per_stem,
    settings_fingerprint, shard_videos,
)
from vidseg.datasets.sources import DatasetVideo, discover_videos, read_split, vspw_videos
from vidseg.datasets.vspw import (
    ID_SPACES, IGNORE_ID, NUM_CLASSES, VspwClass, class_id, export_id, gt_as_evaluated, gt_class_ids, gt_class_prompts,
    label_to_vspw_ids, read_mask, vspw_classes,
)

__all__ = [
    "DatasetVideo", "discover_videos", "read_split", "vspw_videos",
    "LabelEvent", "LabelSummary", "VideoOutcome", "label_dataset", "label_videos", "is_complete", "parse_shard",
    "png_per_stem", "settings_fingerprint", "shard_videos",
    "ID_SPACES", "IGNORE_ID", "NUM_CLASSES", "VspwClass", "class_id", "export_id", "gt_as_evaluated", "gt_class_ids",
    "gt_class_prompts", "label_to_vspw_ids", "read_mask", "vspw_classes",
]
