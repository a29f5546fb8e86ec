"""Datasets: VSPW classes and id conventions, dataset discovery, and the resumable dataset labeling runners (in
this process, and on Ray)."""

from vidseg.datasets.label import (
    LabelEvent, LabelPlan, LabelSummary, VideoOutcome, is_complete, label_dataset, label_videos, parse_shard,
    plan_labels, png_per_stem, settings_fingerprint, shard_videos,
)
from vidseg.datasets.ray_label import RayLabeler
from vidseg.datasets.sources import DatasetVideo, discover_videos, read_split, vspw_videos
from vidseg.datasets.vspw import (
    ID_SPACES, IGNORE_ID, NUM_CLASSES, VspwClass, class_id, export_id, gt_as_evaluated, gt_class_ids, gt_class_prompts,
    label_to_vspw_ids, read_mask, vspw_classes,
)

__all__ = [
    "DatasetVideo", "discover_videos", "read_split", "vspw_videos",
    "LabelEvent", "LabelPlan", "LabelSummary", "VideoOutcome", "label_dataset", "label_videos", "is_complete",
    "parse_shard", "plan_labels", "png_per_stem", "settings_fingerprint", "shard_videos", "RayLabeler",
    "ID_SPACES", "IGNORE_ID", "NUM_CLASSES", "VspwClass", "class_id", "export_id", "gt_as_evaluated", "gt_class_ids",
    "gt_class_prompts", "label_to_vspw_ids", "read_mask", "vspw_classes",
]
