"""Score a prediction folder against a VSPW tree exactly as the official scripts do (``reference.md`` §3.6).

Predictions: ``PRED/<video>/<GT mask file name>`` for every GT mask of every video of the split, single-channel
8-bit PNGs ('L' or 'P', indices read as they are) at the GT's size.

* ``contiguous`` (default): GT after the README mapping (raw 0 and 255 → ignored, others − 1); predictions 0..123.
  This is what the official scripts compute when given the mapped GT.
* ``raw``: GT as stored, like ``evaluator_test.py`` (raw 0 "others" is class 0, raw 124 and 255 are never counted);
  predictions 0..124. The one deviation: a prediction of 124 (``train``) counts as a miss, where the official code
  would alias it into the next GT row's "others" cell (or crash for GT 123).

mIoU, FWIoU, mAcc and pAcc come from one dataset-level confusion matrix; VC8 / VC16 pool the windows of all videos
(``vidseg.evaluation.consistency``), computed on the GT as seen in the id space. A prediction value outside the
range at a scored pixel is an error (never clipped); values at ignored pixels are not scored, as officially.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from vidseg.datasets.sources import DatasetVideo, vspw_videos
from vidseg.datasets.vspw import NUM_CLASSES, check_id_space, eval_class_names, gt_as_evaluated, read_mask
from vidseg.errors import DatasetError
from vidseg.evaluation.confusion import ConfusionMatrix, segmentation_metrics
from vidseg.evaluation.consistency import ConsistencyCounter, pooled_nanmean

VC_LENGTHS = (8, 16)
METRIC_KEYS = ("mIoU", "FWIoU", "mAcc", "pAcc", "VC8", "VC16")


def evaluate_predictions(
    pred_dir: str | Path,
    root: str | Path,
    *,
    split: str | Path = "val.txt",
    id_space: str = "contiguous",
    workers: int | None = None,
    on_video: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``pred_dir`` against the VSPW tree ``root`` (module docstring).

    Returns ``mIoU FWIoU mAcc pAcc VC8 VC16`` (fractions in [0, 1]; NaN when undefined, e.g. VC16 without a video of
    more than 16 mask frames), ``per_class`` (class name → id, iou, acc, gt_pixels, pred_pixels), the counts
    ``num_videos``, ``num_frames``, ``num_pixels`` (scored GT pixels), ``vc_windows``, and ``protocol``: how the
    predictions' classes were chosen (``prediction_protocol``). ``on_video(done, total)``
    reports progress. Raises DatasetError for a bad layout, missing or mis-sized predictions, or bad values.
    """
    check_id_space(id_space)
    pred_dir, root = Path(pred_dir), Path(root)
    if not (root / "data").is_dir():
        raise DatasetError(f"{root} is not a VSPW tree: {root / 'data'} is missing")
    videos = vspw_videos(root, split=split, require_frames=False)  # the GT masks are all it reads
    no_gt = [v.name for v in videos if v.mask_dir is None]
    if no_gt:
        raise DatasetError(f"{len(no_gt)} videos have no GT masks (data/<video>/mask/*.png): {', '.join(no_gt[:3])}")
    workers = workers or min(8, os.cpu_count() or 1)
    check_predictions(pred_dir, videos, workers=workers)

    num_pred_values = NUM_CLASSES + (1 if id_space == "raw" else 0)
    confusion = ConfusionMatrix(NUM_CLASSES, num_pred_values)
    windows: dict[int, list[float]] = {n: [] for n in VC_LENGTHS}
    with ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(_score_video, video, pred_dir, id_space, num_pred_values) for video in videos]
        for done, job in enumerate(jobs, 1):
            matrix, scores = job.result()
            confusion.matrix += matrix
            for n in VC_LENGTHS:
                windows[n].extend(scores[n])
            if on_video:
                on_video(done, len(videos))

    metrics = segmentation_metrics(confusion.matrix)
    names = eval_class_names(id_space)
    per_class = {
        names[k]: {
            "id": k,
            "iou": float(metrics["iou"][k]),
            "acc": float(metrics["acc"][k]),
            "gt_pixels": int(metrics["gt_pixels"][k]),
            "pred_pixels": int(metrics["pred_pixels"][k]),
        }
        for k in range(NUM_CLASSES)
    }
    return {
        "mIoU": metrics["mIoU"],
        "FWIoU": metrics["FWIoU"],
        "mAcc": metrics["mAcc"],
        "pAcc": metrics["pAcc"],
        **{f"VC{n}": pooled_nanmean(windows[n]) for n in VC_LENGTHS},
        "per_class": per_class,
        "id_space": id_space,
        "split": str(split),
        "num_videos": len(videos),
        "num_frames": sum(len(v.output_stems) for v in videos),
        "num_pixels": int(confusion.matrix.sum()),
        "protocol": prediction_protocol(pred_dir),
        "vc_windows": {f"VC{n}": len(windows[n]) for n in VC_LENGTHS},
    }


def check_predictions(pred_dir: str | Path, videos: Sequence[DatasetVideo], *, workers: int = 1) -> None:
    """Fail with one line naming the first few prediction files that are missing, mis-sized or not single-channel.

    Reads only PNG headers; sizes are compared with each video's first GT mask.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(f"prediction folder {pred_dir} does not exist")
    missing: list[str] = []
    present: list[tuple[Path, tuple[int, int]]] = []
    for video in videos:
        folder = pred_dir / video.name
        names = set(os.listdir(folder)) if folder.is_dir() else set()
        for stem in video.output_stems:
            if f"{stem}.png" in names:
                present.append((folder / f"{stem}.png", video.gt_size))
            else:
                missing.append(f"{video.name}/{stem}.png")
    if missing:
        raise DatasetError(
            f"{len(missing)} prediction files are missing from {pred_dir}, e.g. {_first_few(missing)}; "
            "write one PRED/<video>/<mask name>.png per GT mask"
        )
    with ThreadPoolExecutor(workers) as pool:
        problems = [p for p in pool.map(_header_problem, present) if p]
    if problems:
        raise DatasetError(f"{len(problems)} prediction files are unusable: {_first_few(problems)}")


def _header_problem(item: tuple[Path, tuple[int, int]]) -> str | None:
    path, (height, width) = item
    label = f"{path.parent.name}/{path.name}"
    try:
        with Image.open(path) as image:
            mode, (w, h) = image.mode, image.size
    except OSError:
        return f"{label} is not a readable image"
    if mode not in ("L", "P"):
        return f"{label} is mode {mode}, not single-channel 8-bit (L or P)"
    if (h, w) != (height, width):
        return f"{label} is {w}x{h}, the GT {width}x{height}"
    return None


def _score_video(
    video: DatasetVideo, pred_dir: Path, id_space: str, num_pred_values: int
) -> tuple[np.ndarray, dict[int, list[float]]]:
    """One video's confusion matrix and VC window scores (frames in sorted name order)."""
    confusion = ConfusionMatrix(NUM_CLASSES, num_pred_values)
    consistency = ConsistencyCounter(VC_LENGTHS)
    for stem, mask_path in zip(video.output_stems, video.mask_paths):
        gt = gt_as_evaluated(read_mask(mask_path), id_space)
        pred_path = pred_dir / video.name / f"{stem}.png"
        pred = read_mask(pred_path)
        if pred.shape != gt.shape:
            raise DatasetError(f"{video.name}/{stem}.png is {pred.shape[1]}x{pred.shape[0]}, its GT "
                               f"{gt.shape[1]}x{gt.shape[0]}; predictions must have the GT's size")
        try:
            confusion.update(gt, pred)
        except ValueError as exc:
            raise DatasetError(
                f"{video.name}/{stem}.png: {exc} (the {id_space} id space); export with --format vspw "
                f"--id-space {id_space}, which never writes them"
            ) from None
        consistency.add(gt, pred)
    return confusion.matrix, consistency.window_scores()


def _first_few(items: Sequence[str], count: int = 3) -> str:
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")


def prediction_protocol(pred_dir: str | Path) -> dict[str, Any] | None:
    """The class protocol ``vidseg label`` recorded in ``pred_dir``'s ``label_log.json`` (or its shards' logs, when
    they agree): ``{"name": "classes-from-gt" | "vocabulary" | "fixed classes", ...}``; None when no log says it
    (predictions from elsewhere, or from an older vidseg)."""
    logs = sorted(Path(pred_dir).glob("label_log*.json"))
    found = []
    for log in logs:
        try:
            found.append(json.loads(log.read_text()).get("protocol"))
        except (OSError, ValueError, AttributeError):
            continue
    found = [f for f in found if f]
    if not found:
        return None
    if any(f != found[0] for f in found):
        return {"name": "mixed", "logs": found}
    return found[0]
