"""`vidseg label` then `vidseg eval` on a generated miniature VSPW tree, with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import moving_square_frames
from tests.conftest import assert_one_line_error, run_cli


def make_vspw_tree(root: Path, videos: dict[str, int], height: int = 48, width: int = 80) -> None:
    """VSPW layout: data/<video>/origin/*.jpg and, for every other frame, mask/*.png with raw ids (0, 61 person,
    63 dog, 255 void)."""
    for v, (name, num_frames) in enumerate(videos.items()):
        frames = moving_square_frames(num_frames, height, width, seed=v)
        origin, mask_dir = root / "data" / name / "origin", root / "data" / name / "mask"
        origin.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        for t, frame in enumerate(frames):
            stem = f"{100 + t:08d}"
            Image.fromarray(frame).save(origin / f"{stem}.jpg", quality=95)
            if t % 2 == 0:
                mask = np.zeros((height, width), np.uint8)
                mask[: height // 2] = 61
                mask[height // 2:, : width // 2] = 63
                mask[-2:] = 255
                Image.fromarray(mask, mode="L").save(mask_dir / f"{stem}.png")
    (root / "val.txt").write_text("".join(f"{name}\n" for name in videos))


def test_label_then_eval_then_resume(tiny_model_dir, tmp_path):
    root, pred = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {"1_aaa": 10, "2_bbb": 7})
    args = ["label", root, "--out", pred, "--split", "val.txt", "--classes-from-gt", "--model", tiny_model_dir,
            "--no-crf", "--upsampler", "bilinear", "-q"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    for name, num_frames in {"1_aaa": 10, "2_bbb": 7}.items():
        stems = sorted(p.stem for p in (root / "data" / name / "mask").glob("*.png"))
        written = sorted(p.stem for p in (pred / name).glob("*.png"))
        assert written == stems and len(stems) == (num_frames + 1) // 2
        mask = Image.open(pred / name / f"{stems[0]}.png")
        assert mask.mode in ("L", "P") and mask.size == (80, 48)
        values = set(np.unique(np.asarray(mask)))
        assert values <= {60, 62}, values  # contiguous ids of person and dog: never background, never 255
    log = json.loads((pred / "label_log.json").read_text())
    assert sorted(v["status"] for v in log["videos"]) == ["done", "done"]
    assert log["protocol"] == {"name": "classes-from-gt", "presence_threshold": 0.0}

    metrics_path = tmp_path / "metrics.json"
    result = run_cli("eval", pred, root, "--split", "val.txt", "--json", metrics_path, "-q")
    assert result.exit_code == 0, result.output
    assert "classes: each video's GT classes" in " ".join(result.output.split())
    metrics = json.loads(metrics_path.read_text())
    assert {"mIoU", "FWIoU", "mAcc", "pAcc", "VC8", "VC16", "per_class"} <= set(metrics)
    assert 0.0 <= metrics["mIoU"] <= 1.0 and metrics["protocol"]["name"] == "classes-from-gt"

    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    log = json.loads((pred / "label_log.json").read_text())
    assert sorted(v["status"] for v in log["videos"]) == ["skipped", "skipped"]


def test_a_vocabulary_run_is_recorded_and_eval_reports_it(tiny_model_dir, tmp_path):
    root, pred = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {"1_aaa": 5})
    vocabulary = tmp_path / "classes.txt"
    vocabulary.write_text("# our pseudo-labeling vocabulary\nperson\ndog\ncar\n")
    result = run_cli("label", root, "--out", pred, "--classes-file", vocabulary, "--model", tiny_model_dir,
                     "--no-crf", "--upsampler", "bilinear", "-q", "--presence-threshold", "0.5")
    assert result.exit_code == 0, result.output
    protocol = json.loads((pred / "label_log.json").read_text())["protocol"]
    assert protocol == {"name": "vocabulary", "vocabulary": str(vocabulary), "num_classes": 3,
                        "presence_threshold": 0.5}
    labels = json.loads((pred / "1_aaa" / "labels.json").read_text())
    assert all({"present", "presence_score"} <= set(c) for c in labels["classes"].values())
    result = run_cli("eval", pred, root, "-q")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert f"the whole vocabulary {vocabulary} (3 classes); presence threshold 0.5" in text


def test_label_vocabulary_choices_fail_in_one_line(tiny_model_dir, tmp_path):
    root = tmp_path / "vspw"
    make_vspw_tree(root, {"1_aaa": 3})
    base = ["label", root, "--out", tmp_path / "pred", "--model", tiny_model_dir]
    assert_one_line_error(run_cli(*base, "--classes-from-vocab", "coco"), 2, "not a vocabulary vidseg knows")
    # VSPW's 124 classes do not fit the tiny model's 16 text slots: said before any video is labelled.
    assert_one_line_error(run_cli(*base, "--classes-from-vocab", "vspw"), 2, "124 class names given")
    assert_one_line_error(run_cli(*base, "--classes-from-vocab", "vspw", "--classes-from-gt"), 2, "exactly one of")
    assert_one_line_error(run_cli(*base, "--classes-file", tmp_path / "missing.txt"), 2, "does not exist")


def test_label_rejects_non_vspw_class_for_vspw_format(tiny_model_dir, tmp_path):
    root = tmp_path / "vspw"
    make_vspw_tree(root, {"1_aaa": 3})
    result = run_cli("label", root, "--out", tmp_path / "pred", "--classes", "unicorn", "--model", tiny_model_dir)
    assert result.exit_code == 2
    assert "unicorn" in result.output


def test_label_takes_class_names_as_typed(tiny_model_dir, tmp_path):
    """`cup` is the VSPW class bottle_or_cup (raw 85, contiguous 84): the masks hold its id, the model reads `cup`."""
    root, pred = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {"1_aaa": 3})
    result = run_cli("label", root, "--out", pred, "--classes", "CUP", "Fence", "--model", tiny_model_dir,
                     "--no-crf", "-q")
    assert result.exit_code == 0, result.output
    values = set(np.unique(np.asarray(Image.open(next((pred / "1_aaa").glob("*.png"))))))
    assert values <= {84, 7} and values, values
    labels = json.loads((pred / "1_aaa" / "labels.json").read_text())
    assert labels["labels"] == {"0": "background", "1": "CUP", "2": "Fence"}
    assert "CUP" in labels["prompt"] and "Fence" in labels["prompt"]


def test_unknown_class_suggests_the_closest_vspw_names(tiny_model_dir, tmp_path):
    root = tmp_path / "vspw"
    make_vspw_tree(root, {"1_aaa": 3})
    result = run_cli("label", root, "--out", tmp_path / "pred", "--classes", "bottel", "--model", tiny_model_dir)
    assert_one_line_error(result, 2, "'bottel' is not a VSPW class", "did you mean bottle (bottle_or_cup)")
    assert not (tmp_path / "pred").exists()


def test_classes_command_lists_every_vspw_class():
    result = run_cli("classes")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 + 124 and lines[1].split()[:3] == ["0", "1", "wall"]
    cup = run_cli("classes", "cup").output
    assert "bottle_or_cup" in cup and "wall" not in cup
