"""The shipped toy model (``--model toy``): through ``vidseg predict`` it segments held-out toy clips; the same
architecture with random weights does not. The floor sits a margin below what the shipped weights measure on these
clips, so a regression anywhere on the predict path (or in the weights) fails it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.conftest import run_cli
from vidseg.toyworld import absent_pixels, class_ious, render_clip, write_toy_clip
from vidseg.weights import shipped_model_folder

ROOT = REPO

# The first four of tools/toy_bench.py's held-out clips (training uses seeds from 1,000,000, validation from
# 500,000): 11 objects, hard ones among them (seed 0 has three overlapping shapes).
CLIP_SEEDS = (0, 1, 2, 3)
TOY_MEASURED = 0.491  # mean IoU of the shipped weights on CLIP_SEEDS (0.127, 0.463, 0.656, 0.719), 2-core CPU
TOY_FLOOR = TOY_MEASURED - 0.1  # a margin for other torch builds and thread counts
CONTROL_CEILING = 0.25  # issue 8: the random-weight controls must stay below this


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[str], np.ndarray]]:
    folder = tmp_path_factory.mktemp("toy_clips")
    out = []
    for seed in CLIP_SEEDS:
        clip = render_clip(seed, num_frames=24, height=128, width=192)
        path, _ = write_toy_clip(folder / f"toy{seed}.mp4", clip)
        out.append((path, clip.classes, clip.labels))
    return out


def _mean_iou(predicted: np.ndarray, truth: np.ndarray, classes: list[str]) -> float:
    """Mean IoU over the shapes present in ``truth`` (labels ``[T, H, W]``)."""
    return float(np.mean([v for v in class_ious(predicted, truth, classes).values() if v is not None]))


def predict_miou(model: str | Path, clips, tmp_path: Path) -> float:
    """``vidseg predict`` each clip with the classes present; mean over clips of the mean IoU over its shapes."""
    scores = []
    for path, classes, truth in clips:
        out = tmp_path / Path(path).stem
        result = run_cli("predict", path, "--classes", *classes, "--model", model, "--out", out, "-q",
                         "--set", "export.overlay=false", "--set", "export.workers=1")
        assert result.exit_code == 0, result.output
        masks = sorted((out / Path(path).stem / "masks").glob("*.png"))
        predicted = np.stack([np.asarray(Image.open(m)) for m in masks])
        assert not any(absent_pixels(predicted, truth, classes).values())
        scores.append(_mean_iou(predicted, truth, classes))
    return float(np.mean(scores))


def test_toy_resolves_to_the_package_folder():
    folder = shipped_model_folder("toy")
    assert folder is not None and (folder / "transformer" / "config.json").is_file()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 10 * 2**20, f"the shipped toy model is {size / 2**20:.1f} MB; issue 8 allows 10 MB"
    # The weights carry the toy preset they were measured with; a change to configs/toy.yaml must be copied in.
    assert (folder / "vidseg.yaml").read_text() == (ROOT / "configs" / "toy.yaml").read_text()
    assert shipped_model_folder("not-shipped") is None


def test_a_local_folder_named_like_a_shipped_model_wins(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    monkeypatch.chdir(tmp_path)
    assert shipped_model_folder("toy") is None


@pytest.mark.slow
def test_shipped_toy_model_segments_held_out_clips(clips, tmp_path):
    assert predict_miou("toy", clips, tmp_path) >= TOY_FLOOR


@pytest.mark.slow
def test_random_weight_controls_do_not(clips, tiny_model_dir, tmp_path):
    """The random tiny model, and the toy architecture before training (same preset and geometry as the shipped
    weights), on the same clips."""
    from vidseg.models.cogvideox.parts import build_tiny_pipeline
    from vidseg.models.tiny import TOY_SPEC, save_small_pipeline

    untrained = save_small_pipeline(build_tiny_pipeline(TOY_SPEC, seed=0), tmp_path / "untrained", TOY_SPEC.preset)
    for model in (tiny_model_dir, untrained):
        assert predict_miou(model, clips, tmp_path / Path(model).name) < CONTROL_CEILING


@pytest.mark.slow
def test_a_mirrored_map_falls_below_the_floor(clips):
    """The floor is no formality: the shipped model's own maps, mirrored left-right before post-processing (a
    planted flip), score far below it (0.036 measured)."""
    from dataclasses import replace

    from vidseg.config import load_config, model_folder_config
    from vidseg.models.hub import load_model
    from vidseg.pipeline import VideoSegmenter

    config = load_config(model_dir_config=model_folder_config("toy"), overrides=["export.workers=1"])
    config.validate()
    segmenter = VideoSegmenter(load_model("toy"), config)
    scores = []
    for path, classes, truth in clips:
        result = segmenter.compute_saliency(path, classes)
        mirrored = replace(result, sampled=result.sampled.flip(-1))
        predicted = np.stack([labels for _, labels in segmenter.iter_labels(mirrored)])
        scores.append(_mean_iou(predicted, truth, classes))
    assert np.mean(scores) < TOY_FLOOR
