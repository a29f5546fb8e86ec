"""Dataset labeling runners: the resume protocol every run writes through (``resumable``), the run plan they share
(``plan``), and the runs themselves, in this process (``local``) or on Ray (``ray``, dispatching by the rules of
``scheduler``).

Importing this package loads neither torch nor Ray: the model and the export load when a run starts.
"""

from vidseg.runners.local import label_videos
from vidseg.runners.plan import LabelPlan, export_dataset_video, plan_labels, settings_fingerprint
from vidseg.runners.ray import RayLabeler, import_ray
from vidseg.runners.resumable import (
    LabelEvent, LabelLog, LabelSummary, VideoOutcome, is_complete, label_dataset, parse_shard, png_per_stem,
    shard_videos,
)

__all__ = [
    "LabelEvent", "LabelLog", "LabelPlan", "LabelSummary", "RayLabeler", "VideoOutcome", "export_dataset_video",
    "import_ray", "is_complete", "label_dataset", "label_videos", "parse_shard", "plan_labels", "png_per_stem",
    "settings_fingerprint", "shard_videos",
]
