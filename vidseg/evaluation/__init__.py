"""Evaluation: confusion matrix and metrics, video consistency, and the official VSPW protocol."""

from vidseg.evaluation.confusion import ConfusionMatrix, segmentation_metrics
from vidseg.evaluation.consistency import ConsistencyCounter, pooled_nanmean
from vidseg.evaluation.vspw import METRIC_KEYS, check_predictions, evaluate_predictions

__all__ = [
    "ConfusionMatrix", "segmentation_metrics", "ConsistencyCounter", "pooled_nanmean", "METRIC_KEYS",
    "check_predictions", "evaluate_predictions",
]
