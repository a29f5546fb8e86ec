"""Label maps from class probabilities: upsampling guided by each frame, dense CRF, argmax."""

from vidseg.refine.crf import densecrf_available, refine_crf, refine_crf_clip
from vidseg.refine.labels import MAX_CLASSES, to_labels

__all__ = ["MAX_CLASSES", "densecrf_available", "refine_crf", "refine_crf_clip", "to_labels"]
