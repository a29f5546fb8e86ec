"""``vidseg calibrate``: the scores it optimises, and a whole run on a small labeled toy tree with the toy model."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from tests.conftest import assert_one_line_error, run_cli
from vidseg.calibrate import pipeline_scores, read_truth, video_scores
from vidseg.config import load_config
from vidseg.datasets import discover_videos
from vidseg.datasets.vocabulary import load_vocabulary


def test_video_scores_count_every_class_in_truth_or_prediction():
    truth = np.zeros((1, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # class 1 on 4 pixels
    truth[0, 3, 3] = 255  # void: not scored
    labels = np.zeros_like(truth)
    labels[0, :2, :1] = 1  # half of class 1
    labels[0, 3, :2] = 2  # class 2 is not in the truth: an IoU of 0, and 2 absent-class pixels
    labels[0, 3, 3] = 2  # on void: not counted
    miou, absent, pixels = video_scores(labels, truth, num_classes=2)
    assert miou == pytest.approx((0.5 + 0.0) / 2) and absent == 2 and pixels == 15
    assert video_scores(truth.clip(0, 1), truth, num_classes=2)[0] == 1.0


def test_vocabulary_files_and_vspw():
    vspw = load_vocabulary("vspw")
    assert len(vspw.names) == 124 and vspw.values == tuple(range(1, 125))
    mask = np.array([[0, 1, 124, 255]], np.uint8)
    assert vspw.gt_labels(mask).tolist() == [[0, 1, 124, 255]]


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate") / "toy"
    result = run_cli("make-toy-dataset", root, "--videos", "2", "--first-seed", "610000")
    assert result.exit_code == 0, result.output
    return root


def test_calibrate_fits_a_config_that_scores_as_printed(toy_tree, tmp_path):
    from vidseg.pipeline import VideoSegmenter

    out = tmp_path / "calibrated.yaml"
    args = ["calibrate", toy_tree, "--classes-file", toy_tree / "classes.txt", "--model", "toy", "--set",
            "video.frame_folder_fps=8", "--set", "export.workers=1", "-o", out, "-q"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    before, after = (re.search(rf"{word}: mean IoU ([0-9.]+), absent-class pixels ([0-9.]+) %, presence accuracy "
                               rf"([0-9.]+)", text).groups() for word in ("before", "after"))
    fitted = yaml.safe_load(out.read_text())
    assert set(fitted) == {"presence", "probs"} and set(fitted["probs"]) == {"background"}
    assert float(after[0]) >= float(before[0])  # the search includes the current settings
    # The written file, given to --config, gives the printed "after" scores through the pipeline.
    config = load_config(model="toy", user_config=out, overrides=["video.frame_folder_fps=8", "export.workers=1"])
    config.validate()
    segmenter = VideoSegmenter.from_pretrained(config=config)
    vocabulary = load_vocabulary(toy_tree / "classes.txt")
    videos = discover_videos(toy_tree)
    labeled = [read_truth(v, vocabulary, segmenter.compute_saliency(v.source, list(vocabulary.names)))
               for v in videos]
    scores = pipeline_scores(labeled, config)
    assert f"{scores.miou:.3f}" == after[0] and f"{scores.absent_pixel_percent:.3f}" == after[1]
    assert f"{scores.presence_accuracy:.3f}" == after[2]


def test_calibrate_needs_labels_and_a_file_to_write(toy_tree, tmp_path):
    unlabeled = tmp_path / "frames"
    (unlabeled / "clip").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(unlabeled / "clip" / "00000.png")
    assert_one_line_error(run_cli("calibrate", unlabeled, "--model", "toy", "-o", tmp_path / "c.yaml"), 2,
                          "no videos with GT masks")
    assert_one_line_error(run_cli("calibrate", toy_tree, "--model", "toy", "-o", tmp_path), 2, "is a folder")
    assert_one_line_error(run_cli("calibrate", toy_tree, "--classes-file", tmp_path / "none.txt", "--model", "toy",
                                  "-o", tmp_path / "c.yaml"), 2, "does not exist")
    assert not (tmp_path / "c.yaml").exists()
