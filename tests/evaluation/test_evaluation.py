"""VSPW evaluation: hand-computed metrics on miniature VSPW trees, and agreement with a literal re-statement of the
official scripts' rules (evaluator_test.py, VC_perclip.py) on random trees, in both id spaces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.errors import DatasetError
from vidseg.evaluation import ConfusionMatrix, ConsistencyCounter, evaluate_predictions


def write_vspw_tree(root: Path, gt: dict[str, list[np.ndarray]], split: str = "val.txt") -> Path:
    """data/<video>/origin/<stem>.jpg + data/<video>/mask/<stem>.png (raw values) and a split file."""
    for video, masks in gt.items():
        for t, mask in enumerate(masks):
            stem = f"{t * 3 + 7:08d}"  # VSPW-like 8-digit names that do not start at 0
            (root / "data" / video / "origin").mkdir(parents=True, exist_ok=True)
            (root / "data" / video / "mask").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(root / "data" / video / "origin" / f"{stem}.jpg")
            Image.fromarray(mask.astype(np.uint8)).save(root / "data" / video / "mask" / f"{stem}.png")
    (root / split).write_text("".join(f"{v}\n" for v in gt))
    return root


def write_predictions(pred_dir: Path, root: Path, preds: dict[str, list[np.ndarray]]) -> Path:
    for video, frames in preds.items():
        stems = sorted(p.stem for p in (root / "data" / video / "mask").glob("*.png"))
        (pred_dir / video).mkdir(parents=True, exist_ok=True)
        for stem, pred in zip(stems, frames):
            Image.fromarray(pred.astype(np.uint8)).save(pred_dir / video / f"{stem}.png")
    return pred_dir


# Video "a": two 2x3 frames; raw GT with "others" (0) and void (255), predictions in contiguous ids.
A_GT = [np.array([[1, 1, 2], [0, 255, 2]]), np.array([[3, 3, 3], [1, 1, 0]])]
A_PRED = [np.array([[0, 1, 1], [5, 7, 1]]), np.array([[2, 2, 0], [0, 3, 9]])]


def test_confusion_metrics_by_hand(tmp_path: Path) -> None:
    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT})
    pred = write_predictions(tmp_path / "pred", root, {"a": A_PRED})
    r = evaluate_predictions(pred, root)
    # Mapped GT [[0,0,1],[255,255,1]] and [[2,2,2],[0,0,255]]: 9 scored pixels. Confusion rows (GT) x cols (pred):
    # class 0: [2, 1, 0, 1], class 1: [0, 2, 0, 0], class 2: [1, 0, 2, 0]; class 3 is predicted once, never in GT.
    assert r["num_pixels"] == 9
    assert r["pAcc"] == pytest.approx(6 / 9)
    assert r["mAcc"] == pytest.approx((2 / 4 + 2 / 2 + 2 / 3) / 3)
    iou = [2 / (4 + 3 - 2), 2 / (2 + 3 - 2), 2 / (3 + 2 - 2)]
    assert r["mIoU"] == pytest.approx(sum(iou) / 3)  # not / 4: class 3 is absent from the GT
    assert r["FWIoU"] == pytest.approx(4 / 9 * iou[0] + 2 / 9 * iou[1] + 3 / 9 * iou[2])
    assert r["per_class"]["wall"] == {"id": 0, "iou": pytest.approx(0.4), "acc": 0.5, "gt_pixels": 4, "pred_pixels": 3}
    assert r["per_class"]["stair"]["iou"] == 0.0 and r["per_class"]["stair"]["gt_pixels"] == 0
    assert math.isnan(r["per_class"]["train"]["iou"])
    assert math.isnan(r["VC8"]) and r["vc_windows"] == {"VC8": 0, "VC16": 0}


def test_raw_id_space_scores_others_and_drops_train(tmp_path: Path) -> None:
    gt = [np.array([[0, 0, 124], [2, 255, 2]])]
    pred = [np.array([[0, 1, 124], [2, 2, 124]])]  # raw values; 124 = train, never in a counted GT row
    root = write_vspw_tree(tmp_path / "vspw", {"a": gt})
    r = evaluate_predictions(write_predictions(tmp_path / "pred", root, {"a": pred}), root, id_space="raw")
    # Scored: GT 0 (others) x2 -> pred 0, 1; GT 2 x2 -> pred 2 and 124 (a miss). GT 124 and 255 are not scored.
    assert r["num_pixels"] == 4
    assert r["pAcc"] == pytest.approx(2 / 4)
    assert r["per_class"]["others"]["iou"] == pytest.approx(1 / 2)
    assert r["per_class"]["ceiling"]["id"] == 2 and r["per_class"]["ceiling"]["iou"] == pytest.approx(1 / 2)
    assert r["mIoU"] == pytest.approx(0.5)
    assert "train" not in r["per_class"]


def _vc_tree() -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """Video b (18 frames), c (8 frames: too short for VC8), d (9: one window, no GT-consistent pixel), e (9)."""
    b_gt, b_pred = [], []
    for t in range(18):
        others_or_void = 0 if t % 2 == 0 else 255  # one value after the README mapping, two in raw ids
        b_gt.append(np.array([[1, 2, 3 if t < 10 else 4, others_or_void]]))
        b_pred.append(np.array([[0, 7 if t == 5 else 1, 2, 3]]))
    c_gt = [np.array([[1, 1]])] * 8
    c_pred = [np.array([[t % 2, t % 2]]) for t in range(8)]
    d_gt = [np.array([[t % 2 + 1, (t + 1) % 2 + 1]]) for t in range(9)]
    d_pred = [np.array([[0, 0]])] * 9
    e_gt = [np.array([[5, 6]])] * 9
    e_pred = [np.array([[4, 5]])] * 9
    return {"b": b_gt, "c": c_gt, "d": d_gt, "e": e_gt}, {"b": b_pred, "c": c_pred, "d": d_pred, "e": e_pred}


def test_video_consistency_by_hand(tmp_path: Path) -> None:
    gt, pred = _vc_tree()
    root = write_vspw_tree(tmp_path / "vspw", gt)
    pred_dir = write_predictions(tmp_path / "pred", root, pred)
    r = evaluate_predictions(pred_dir, root)
    # b, VC8: starts 0..9 (start 10 skipped). Pixel 2's GT changes between frames 9 and 10; pixel 1's prediction
    # flickers at frame 5; pixel 3 is void throughout once mapped. Starts 0-2: 3/4, 3-5: 2/3, 6-9: 3/3.
    # c has 8 frames (not more than 8): no window. d: its one window has no GT-consistent pixel (NaN, skipped).
    # e: one window, 1.0. Windows are pooled over videos: 11 scored windows.
    assert r["vc_windows"] == {"VC8": 12, "VC16": 2}
    assert r["VC8"] == pytest.approx((3 * 3 / 4 + 3 * 2 / 3 + 4 * 1.0 + 1.0) / 11)
    assert r["VC16"] == pytest.approx(2 / 3)  # b only: starts 0 and 1, both 2/3
    raw = evaluate_predictions(pred_dir, root, id_space="raw", workers=1)
    # Raw ids keep "others" (0) and void (255) apart, so pixel 3 is never GT-consistent: 2/3, 1/2, 1.
    assert raw["VC8"] == pytest.approx((3 * 2 / 3 + 3 * 1 / 2 + 4 * 1.0 + 1.0) / 11)
    assert raw["VC16"] == pytest.approx(1 / 2)


def test_consistency_counter_window_rule() -> None:
    counter = ConsistencyCounter((2,))
    for t in range(5):  # 5 frames, n = 2: starts 0..2 scored, start 3 (the last) skipped
        counter.add(np.array([[t // 4]]), np.array([[0]]))
    assert counter.window_scores() == {2: [1.0, 1.0, 1.0]}


def test_confusion_matrix_refuses_values_that_would_alias() -> None:
    cm = ConfusionMatrix(124)
    cm.update(np.array([[5, 255]], np.uint8), np.array([[5, 255]], np.uint8))  # 255 at an ignored pixel: fine
    with pytest.raises(ValueError, match="255"):
        cm.update(np.array([[5]], np.uint8), np.array([[255]], np.uint8))
    assert cm.matrix.sum() == 1 and cm.matrix[5, 5] == 1
    cm.reset()
    assert cm.matrix.sum() == 0 and math.isnan(cm.compute()["mIoU"])


# --- a literal re-statement of the official scripts, for random comparisons -------------------------------------

def official_scores(root: Path, pred_dir: Path, id_space: str) -> dict[str, float]:
    """evaluator_test.py + VC_perclip.py rules, written out naively (mapped GT in the contiguous id space)."""
    names = [line[:-1] for line in (root / "val.txt").read_text().splitlines(keepends=True)]
    k = 124
    matrix = np.zeros((k, k))
    vc: dict[int, list[float]] = {8: [], 16: []}
    for video in names:
        files = sorted(p.name for p in (root / "data" / video / "mask").iterdir())
        gts, preds = [], []
        for f in files:
            g = np.array(Image.open(root / "data" / video / "mask" / f)).astype(np.int64)
            if id_space == "contiguous":
                g[g == 0] = 255
                g = g - 1
                g[g == 254] = 255
            p = np.array(Image.open(pred_dir / video / f)).astype(np.int64)
            mask = (g >= 0) & (g < k)
            matrix += np.bincount(k * g[mask] + p[mask], minlength=k * k).reshape(k, k)
            gts.append(g)
            preds.append(p)
        for n in vc:
            if len(files) <= n:
                continue
            for i in range(len(files) - n):
                g_common = np.ones(gts[0].shape, bool)
                p_common = np.ones(gts[0].shape, bool)
                for j in range(1, n):
                    g_common &= gts[i] == gts[i + j]
                    p_common &= preds[i] == preds[i + j]
                with np.errstate(invalid="ignore"):
                    vc[n].append((p_common & g_common).sum() / g_common.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.diag(matrix) / (matrix.sum(1) + matrix.sum(0) - np.diag(matrix))
        valid = matrix.sum(1) > 0
        freq = matrix.sum(1) / matrix.sum()
        return {
            "pAcc": np.diag(matrix).sum() / matrix.sum(),
            "mAcc": np.nanmean(np.diag(matrix) / matrix.sum(1)),
            "mIoU": np.nansum(iou * valid) / valid.sum(),
            "FWIoU": (freq[freq > 0] * iou[freq > 0]).sum(),
            "VC8": np.nanmean(vc[8]) if vc[8] else np.nan,
            "VC16": np.nanmean(vc[16]) if vc[16] else np.nan,
        }


@pytest.mark.parametrize("id_space", ["contiguous", "raw"])
def test_matches_official_rules_on_random_tree(tmp_path: Path, id_space: str) -> None:
    rng = np.random.default_rng(3)
    gt, pred = {}, {}
    for v, length in enumerate([3, 9, 12, 17, 20]):
        h, w = rng.integers(4, 9, size=2)
        base = rng.choice([0, 3, 4, 9, 60, 124, 255], size=(h, w))
        frames = []
        for _ in range(length):  # mostly stable GT with a few changing pixels, so windows are non-trivial
            flip = rng.random((h, w)) < 0.05
            base = np.where(flip, rng.choice([0, 3, 4, 255], size=(h, w)), base)
            frames.append(base.copy())
        gt[f"{v}_vid"] = frames
        shift = 1 if id_space == "raw" else 0
        p_base = np.clip(np.where(base == 255, 3, base) - 1 + shift, 0, 123)
        pred[f"{v}_vid"] = [np.where(rng.random((h, w)) < 0.1, rng.integers(0, 6, (h, w)), p_base) for _ in frames]
    root = write_vspw_tree(tmp_path / "vspw", gt)
    pred_dir = write_predictions(tmp_path / "pred", root, pred)
    ours = evaluate_predictions(pred_dir, root, id_space=id_space)
    reference = official_scores(root, pred_dir, id_space)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key


# --- errors ------------------------------------------------------------------------------------------------------

def test_missing_and_missized_predictions_are_named(tmp_path: Path) -> None:
    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT, "b": A_GT})
    pred_dir = write_predictions(tmp_path / "pred", root, {"a": A_PRED})
    with pytest.raises(DatasetError, match=r"2 prediction files are missing.*b/00000007\.png"):
        evaluate_predictions(pred_dir, root)
    write_predictions(pred_dir, root, {"b": [np.zeros((3, 2)), A_PRED[1]]})
    with pytest.raises(DatasetError, match=r"b/00000007\.png is 2x3, the GT 3x2"):
        evaluate_predictions(pred_dir, root)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(pred_dir / "b" / "00000007.png")
    with pytest.raises(DatasetError, match="mode RGB"):
        evaluate_predictions(pred_dir, root)


def test_out_of_range_prediction_is_refused(tmp_path: Path) -> None:
    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT})
    bad = [A_PRED[0], np.where(A_PRED[1] == 2, 255, A_PRED[1])]
    pred_dir = write_predictions(tmp_path / "pred", root, {"a": bad})
    with pytest.raises(DatasetError, match=r"a/00000010\.png: prediction values \[255\]"):
        evaluate_predictions(pred_dir, root)


def test_frames_are_not_needed_to_evaluate(tmp_path: Path) -> None:
    import shutil

    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT})
    shutil.rmtree(root / "data" / "a" / "origin")
    r = evaluate_predictions(write_predictions(tmp_path / "pred", root, {"a": A_PRED}), root)
    assert r["pAcc"] == pytest.approx(6 / 9)


def test_bad_split_names_missing_videos(tmp_path: Path) -> None:
    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT})
    (root / "val.txt").write_text("a\nghost_1\nghost_2\n")
    with pytest.raises(DatasetError, match="2 videos of val.txt are not in .*ghost_1, ghost_2"):
        evaluate_predictions(tmp_path / "pred", root)


def test_eval_command_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vidseg.cli.evaluate import eval_command

    root = write_vspw_tree(tmp_path / "vspw", {"a": A_GT})
    pred = write_predictions(tmp_path / "pred", root, {"a": A_PRED})
    out = tmp_path / "metrics.json"
    eval_command(pred, root, split="val.txt", json_path=out, id_space="contiguous", quiet=True, debug=False)
    printed = capsys.readouterr().out
    assert "57.78" in printed and "stair*" in printed  # mIoU in percent; class 3 flagged as not in the GT
    doc = json.loads(out.read_text())
    assert set(doc) >= {"mIoU", "FWIoU", "mAcc", "pAcc", "VC8", "VC16", "per_class"}
    assert doc["mIoU"] == pytest.approx(0.5777777) and doc["VC8"] is None
    assert all(0 <= doc[k] <= 1 for k in ("mIoU", "FWIoU", "mAcc", "pAcc"))
