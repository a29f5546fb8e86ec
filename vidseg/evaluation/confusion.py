"""Dataset-level confusion matrix and the segmentation metrics of the official VSPW evaluator.

Rows are GT classes, columns prediction values. Only GT pixels with a value below ``num_classes`` are counted (255
and any other larger value are ignored), exactly like the official ``Evaluator``. Prediction values may extend past
the classes (``num_pred_values``): such a column is a value that can never be right, so its pixels count as misses
of their GT class (the raw id space needs one, for ``train`` = 124).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ConfusionMatrix:
    """Accumulates ``matrix`` ``[num_classes, num_pred_values]`` int64 over frames: update, compute, reset."""

    def __init__(self, num_classes: int, num_pred_values: int | None = None):
        self.num_classes = num_classes
        self.num_pred_values = num_pred_values or num_classes
        if self.num_pred_values < num_classes:
            raise ValueError("num_pred_values must be at least num_classes")
        self.matrix = np.zeros((num_classes, self.num_pred_values), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> "ConfusionMatrix":
        """Count one frame: ``gt`` and ``pred`` ``[H, W]`` non-negative integers of the same shape.

        Raises ValueError when a counted pixel's prediction is not below ``num_pred_values`` (the official code would
        silently alias it into another cell, or crash).
        """
        if gt.shape != pred.shape:
            raise ValueError(f"GT is {gt.shape} but the prediction is {pred.shape}")
        ignored = gt >= self.num_classes
        if pred.size and pred.max() >= self.num_pred_values:
            bad = ~ignored & (pred >= self.num_pred_values)
            if bad.any():
                values = np.unique(pred[bad])
                raise ValueError(
                    f"prediction values {values[:5].tolist()} at scored pixels are outside "
                    f"0..{self.num_pred_values - 1}"
                )
        # Cell index gt * P + pred; ignored pixels go to one extra bin past the matrix (no boolean gather).
        # uint16 is 5x faster than int64 here; wrap-around can only happen at ignored pixels, which are overwritten.
        size = self.num_classes * self.num_pred_values
        dtype = np.uint16 if size < 2**16 else np.int64
        index = gt.astype(dtype) * dtype(self.num_pred_values) + pred.astype(dtype)
        np.putmask(index, ignored, size)
        self.matrix += np.bincount(index.ravel(), minlength=size + 1)[:size].reshape(self.matrix.shape)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix of the same shape (e.g. from another worker)."""
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        self.matrix[:] = 0

    def compute(self) -> dict[str, Any]:
        return segmentation_metrics(self.matrix)


def segmentation_metrics(matrix: np.ndarray) -> dict[str, Any]:
    """Official VSPW metrics of a confusion matrix ``[K, P]`` (rows GT classes, columns prediction values, P ≥ K).

    * ``pAcc`` = Σ_c M_cc / Σ M
    * ``mAcc`` = nanmean over classes of M_cc / Σ_j M_cj (classes without GT pixels skipped)
    * ``iou`` per class = M_cc / (Σ_j M_cj + Σ_i M_ic − M_cc), NaN when the class is in neither GT nor prediction
    * ``mIoU`` = mean IoU over classes present in the GT (a class only predicted does not count)
    * ``FWIoU`` = Σ over GT-present classes of (Σ_j M_cj / Σ M) · IoU_c

    Also returns per-class ``iou``, ``acc``, ``gt_pixels`` and ``pred_pixels`` arrays ``[K]``. Empty → NaN metrics.
    """
    num_classes = matrix.shape[0]
    matrix = matrix.astype(np.float64)
    diag = np.diag(matrix[:, :num_classes])
    gt_pixels = matrix.sum(axis=1)
    pred_pixels = matrix[:, :num_classes].sum(axis=0)
    total = gt_pixels.sum()
    present = gt_pixels > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / gt_pixels
        iou = diag / (gt_pixels + pred_pixels - diag)
        pixel_acc = diag.sum() / total if total else np.nan
        freq = gt_pixels / total if total else np.zeros_like(gt_pixels)
    return {
        "pAcc": float(pixel_acc),
        "mAcc": float(acc[present].mean()) if present.any() else np.nan,
        "mIoU": float(iou[present].mean()) if present.any() else np.nan,
        "FWIoU": float((freq[present] * iou[present]).sum()) if present.any() else np.nan,
        "iou": iou,
        "acc": acc,
        "gt_pixels": gt_pixels.astype(np.int64),
        "pred_pixels": pred_pixels.astype(np.int64),
    }
