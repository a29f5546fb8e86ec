"""Datasets: VSPW classes and id conventions, and dataset discovery (VSPW trees, frame folders, video files). The
labeling runs that use them are in ``vidseg.runners``."""

from vidseg.datasets.sources import DatasetVideo, discover_videos, read_split, vspw_videos
from vidseg.datasets.vspw import (
    ID_SPACES, IGNORE_ID, NUM_CLASSES, VspwClass, class_id, export_id, gt_as_evaluated, gt_class_ids, gt_class_prompts,
    label_to_vspw_ids, read_mask, vspw_classes,
)

__all__ = [
    "DatasetVideo", "discover_videos", "read_split", "vspw_videos",
    "ID_SPACES", "IGNORE_ID", "NUM_CLASSES", "VspwClass", "class_id", "export_id", "gt_as_evaluated", "gt_class_ids",
    "gt_class_prompts", "label_to_vspw_ids", "read_mask", "vspw_classes",
]
