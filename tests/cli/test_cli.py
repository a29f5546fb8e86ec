"""End to end through the CLI with the tiny model, and every bad-input case: one line, non-zero exit, no output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli
from vidseg.cli.main import expand_multi_value


def test_expand_multi_value_takes_words_until_next_option():
    argv = ["predict", "v.mp4", "--classes", "person", "dog", "--out", "o"]
    assert expand_multi_value(argv) == ["predict", "v.mp4", "--classes", "person", "--classes", "dog", "--out", "o"]


def test_predict_end_to_end_writes_one_mask_per_frame(tiny_model_dir, video_factory, tmp_path):
    video = video_factory("walk.mp4", num_frames=21, height=72, width=128, fps=24)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "person", "dog", "--model", tiny_model_dir, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    folder = out / "walk"
    masks = sorted((folder / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:05d}.png" for i in range(21)]
    for mask in masks[:3] + masks[-2:]:
        image = Image.open(mask)
        assert image.mode == "P" and image.size == (128, 72)
        assert set(np.unique(np.asarray(image))) <= {0, 1, 2}
    labels = json.loads((folder / "labels.json").read_text())
    assert labels["labels"] == {"0": "background", "1": "person", "2": "dog"}
    saliency = np.load(folder / "saliency.npz")
    maps = saliency["saliency"]
    assert maps.dtype == np.float16 and maps.shape[0] == 2 and maps.shape[2:] == (4, 6)
    assert np.isfinite(maps.astype(np.float32)).all()
    assert (folder / "overlay.mp4").stat().st_size > 0
    assert not list(out.glob(".*tmp*")), "temporary folders must be gone"
    # The per-class summary counts what the masks hold.
    stacked = np.stack([np.asarray(Image.open(m)) for m in masks])
    for k, name in ((1, "person"), (2, "dog")):
        stats = labels["classes"][name]
        present = [(frame == k).mean() * 100 for frame in stacked if (frame == k).any()]
        assert stats["frames_present"] == len(present)
        assert stats["mean_area_percent"] == pytest.approx(np.mean(present) if present else 0.0, abs=1e-3)
        assert stats["peak_saliency"] == pytest.approx(float(maps[k - 1].astype(np.float32).max()), abs=2e-2)
    # Heatmaps: one frame per input frame, a panel per class; a preview sheet of 4 rows.
    import av

    with av.open(str(folder / "saliency.mp4")) as container:
        heat = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(heat) == 21 and heat[0].shape[0] == 36  # two classes: two half-size panels side by side
    preview = np.asarray(Image.open(folder / "preview.png"))
    assert preview.shape[0] == 4 * 72 and preview.shape[2] == 3


def test_predict_summary_table_and_no_heatmaps(tiny_model_dir, video_factory, tmp_path):
    video = video_factory("clip.mp4", num_frames=9, height=48, width=80)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "car", "boat", "--model", tiny_model_dir, "--out", out,
                     "--no-export-heatmaps", "--no-crf")
    assert result.exit_code == 0, result.output
    assert not (out / "clip" / "saliency.mp4").exists() and not (out / "clip" / "preview.png").exists()
    table = result.output[result.output.index("clip: 9 frames"):]
    assert "frames labelled" in table and "present (score)" in table and "car" in table and "boat" in table
    assert set(json.loads((out / "clip" / "labels.json").read_text())["classes"]) == {"car", "boat"}


class PostProcessingRan(Exception):
    pass


def test_maps_only_predict_does_no_post_processing(tiny_model_dir, video_factory, tmp_path, monkeypatch):
    """--format npz with no overlay or heatmaps writes the maps straight from the model pass: no frame is read
    again, no probabilities, no upsampling, no CRF (each raises here), and the summary shows what it lacks."""
    import vidseg.postprocess
    import vidseg.refine.labels
    import vidseg.upsample.upsamplers
    from vidseg.result import SaliencyResult

    def forbidden(*args, **kwargs):
        raise PostProcessingRan

    for module, name in ((SaliencyResult, "open_video"), (vidseg.postprocess, "saliency_to_probs"),
                         (vidseg.postprocess, "to_labels"), (vidseg.refine.labels, "to_labels"),
                         (vidseg.refine.labels, "get_upsampler"), (vidseg.refine.labels, "refine_crf_clip"),
                         (vidseg.upsample.upsamplers, "get_upsampler")):
        monkeypatch.setattr(module, name, forbidden)
    video = video_factory("clip.mp4", num_frames=9, height=48, width=80)
    out = tmp_path / "out"
    args = ["predict", video, "--classes", "car", "boat", "--model", tiny_model_dir]
    result = run_cli(*args, "--out", out, "--format", "npz", "--no-overlay", "--no-export-heatmaps")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["labels.json", "saliency.npz"]
    classes = json.loads((out / "clip" / "labels.json").read_text())["classes"]
    maps = np.load(out / "clip" / "saliency.npz")["saliency"].astype(np.float32)
    assert list(classes) == ["car", "boat"]
    for k, stats in enumerate(classes.values()):  # no frames or area without labels; presence needs only maps
        assert list(stats) == ["presence_score", "present", "peak_saliency"]
        assert stats["peak_saliency"] == pytest.approx(float(maps[k].max()), abs=2e-2)
    table = result.output[result.output.index("clip: 9 frames"):]
    assert "—" in table and "maps-only export makes no labels" in table
    # The same patches stop any export that needs labels, so they are live.
    for views in (["--format", "npz", "--overlay", "--no-export-heatmaps"], []):
        stopped = run_cli(*args, "--out", tmp_path / f"out{len(views)}", *views, "-q")
        assert isinstance(stopped.exception, PostProcessingRan), stopped.output


def test_predict_renoise_gramcol_without_crf(tiny_model_dir, video_factory, tmp_path):
    video = video_factory("clip.mp4", num_frames=9, height=48, width=80)
    out = tmp_path / "out"
    result = run_cli(
        "predict", video, "--classes", "car", "--model", tiny_model_dir, "--out", out, "--inversion", "renoise",
        "--map", "gramcol", "--no-crf", "--upsampler", "bilinear", "--no-overlay", "-q",
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "clip" / "masks").glob("*.png"))) == 9
    assert not (out / "clip" / "overlay.mp4").exists()


@pytest.mark.parametrize("kind", ["cross_attention", "concept_attention"])
def test_predict_with_each_baseline_map(tiny_model_dir, video_factory, tmp_path, kind):
    video = video_factory("clip.mp4", num_frames=9, height=48, width=80)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "car", "boat", "--model", tiny_model_dir, "--out", out,
                     "--map", kind, "--no-crf", "--upsampler", "bilinear", "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    folder = out / "clip"
    assert len(list((folder / "masks").glob("*.png"))) == 9
    assert json.loads((folder / "labels.json").read_text())["settings"]["maps"]["kind"] == kind
    maps = np.load(folder / "saliency.npz")["saliency"].astype(np.float32)
    assert maps.shape[:2] == (2, 3) and np.isfinite(maps).all() and np.ptp(maps) > 0


@pytest.mark.parametrize(
    "classes, words",
    [([], ["no classes"]), (["person", " "], ["blank"]), (["dog", "Dog"], ["twice"])],
)
def test_bad_classes(tiny_model_dir, video_factory, tmp_path, classes, words):
    video = video_factory()
    args = ["predict", video, "--model", tiny_model_dir, "--out", tmp_path / "out"]
    if classes:
        args += ["--classes", *classes]
    assert_one_line_error(run_cli(*args), 2, *words)
    assert not (tmp_path / "out").exists()


def test_missing_video(tiny_model_dir, tmp_path):
    result = run_cli("predict", tmp_path / "nope.mp4", "--classes", "dog", "--model", tiny_model_dir,
                     "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "nope.mp4")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"this is not a video at all\n" * 20])
def test_unreadable_or_empty_video(tiny_model_dir, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    result = run_cli("predict", bad, "--classes", "dog", "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "bad.mp4")
    assert not (tmp_path / "out").exists()


def test_corrupt_video(tiny_model_dir, video_factory, tmp_path):
    good = video_factory("good.mp4", num_frames=30)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: 400])
    result = run_cli("predict", corrupt, "--classes", "dog", "--model", tiny_model_dir, "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "corrupt.mp4")


def test_unwritable_out(tiny_model_dir, video_factory, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = run_cli("predict", video_factory(), "--classes", "dog", "--model", tiny_model_dir,
                     "--out", blocker / "out")
    assert_one_line_error(result, 2, "out")


def test_missing_model(video_factory, tmp_path):
    result = run_cli("predict", video_factory(), "--classes", "dog", "--model", tmp_path / "no-model",
                     "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "no-model")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_option_value(tiny_model_dir, video_factory, tmp_path):
    result = run_cli("predict", video_factory(), "--classes", "dog", "--model", tiny_model_dir,
                     "--out", tmp_path / "out", "--inversion", "backwards")
    assert_one_line_error(result, 2, "inversion.method")


def test_unknown_set_key_suggests_the_closest(tiny_model_dir, video_factory, tmp_path):
    result = run_cli("predict", video_factory(), "--classes", "dog", "--model", tiny_model_dir,
                     "--out", tmp_path / "out", "--set", "maps.top_k_head=2")
    assert_one_line_error(result, 2, "maps.top_k_heads")


def test_predict_5b_preset_with_rope_model_on_vp9_and_av1(tiny_rope_model_dir, video_factory, tmp_path):
    """The CogVideoX-5B path (RoPE on video q/k, DPM scheduler) end to end, on the codecs decord cannot read."""
    import av

    videos = [video_factory("vp9.webm", num_frames=12, codec="libvpx-vp9")]
    if "libsvtav1" in av.codecs_available:
        videos.append(video_factory("av1.mp4", num_frames=12, codec="libsvtav1"))
    out = tmp_path / "out"
    result = run_cli("predict", *videos, "--classes", "dog", "--preset", "cogvideox-5b",
                     "--model", tiny_rope_model_dir, "--out", out, "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    for video in videos:
        labels = json.loads((out / video.stem / "labels.json").read_text())
        assert labels["settings"]["model"]["source"] == str(tiny_rope_model_dir)
        assert len(list((out / video.stem / "masks").glob("*.png"))) == 12


def test_saliency_npz_reloads_for_model_free_post_processing(tiny_model_dir, video_factory, tmp_path):
    from vidseg.config import load_config
    from vidseg.export.run import export_labels
    from vidseg.result import SaliencyResult

    video = video_factory("clip.mp4", num_frames=15)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "cat", "dog", "--model", tiny_model_dir, "--out", out,
                     "--no-overlay", "--no-crf", "--upsampler", "bilinear", "-q")
    assert result.exit_code == 0, result.output
    config = load_config("cogvideox-2b", model_dir_config=tiny_model_dir / "vidseg.yaml",
                         overrides=["crf.enabled=false", "upsample.method=bilinear", "export.overlay=false"])
    reloaded = SaliencyResult.load(out / "clip" / "saliency.npz", video)
    assert reloaded.classes == ["cat", "dog"]
    export_labels(reloaded, tmp_path / "again", config)
    for first in sorted((out / "clip" / "masks").glob("*.png")):
        again = np.asarray(Image.open(tmp_path / "again" / "masks" / first.name))
        # float16 storage of the maps may flip a handful of near-tie pixels, no more
        assert (again != np.asarray(Image.open(first))).mean() < 0.01


@pytest.mark.parametrize("inversion", ["ddim", "renoise"])
def test_predict_in_bfloat16(tiny_model_dir, video_factory, tmp_path, inversion):
    """bf16 is the GPU default: latents kept in float32 by the inversion must reach the model in its dtype."""
    video = video_factory("clip.mp4", num_frames=9)
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_model_dir, "--out", tmp_path / "out",
                     "--dtype", "bfloat16", "--inversion", inversion, "--no-crf", "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "clip" / "masks").glob("*.png"))) == 9


def test_labels_in_memory_without_files(tiny_model_dir, video_factory, tmp_path):
    """A library user gets masks as arrays: no output folder is written."""
    from vidseg import VideoSegmenter, load_config

    video = video_factory("clip.mp4", num_frames=15, height=72, width=128)
    config = load_config(model_dir_config=tiny_model_dir / "vidseg.yaml", overrides=["export.workers=1"])
    segmenter = VideoSegmenter.from_pretrained(str(tiny_model_dir), config=config)
    result = segmenter.compute_saliency(video, ["person", "dog"])
    frames = list(segmenter.iter_labels(result))
    assert [i for i, _ in frames] == list(range(15))
    assert all(labels.shape == (72, 128) and labels.dtype == np.uint8 and labels.max() <= 2 for _, labels in frames)
    assert list(tmp_path.iterdir()) == [video]
    some = list(segmenter.iter_labels(result, frame_indices=[3, 7]))
    assert [i for i, _ in some] == [3, 7] and np.array_equal(some[1][1], frames[7][1])


def test_demo_without_gradio_is_one_line(tiny_model_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = run_cli("demo", "--model", tiny_model_dir)
    assert_one_line_error(result, 2, "vidseg[demo]")


@pytest.mark.parametrize("args, words", [
    (["--auth", "ann"], ["--auth: give user:password"]),
    (["--max-seconds", "0"], ["seconds per job (0.0)", "must be positive"]),
    (["--max-waiting", "-1"], ["waiting jobs (-1) must be >= 0"]),
])
def test_demo_bad_limits_and_auth_are_one_line(args, words, monkeypatch):
    pytest.importorskip("gradio", reason="the demo needs the vidseg[demo] extra")
    from vidseg.pipeline import VideoSegmenter

    def never(*a, **k):
        raise AssertionError("the model must not load before the options are checked")

    monkeypatch.setattr(VideoSegmenter, "from_pretrained", never)
    assert_one_line_error(run_cli("demo", *args), 2, *words)


def test_a_log_lists_each_stage_as_it_finishes_before_wrote(tiny_model_dir, video_factory, tmp_path, monkeypatch):
    """Not a terminal (a file, CI, SLURM): a plain line per finished stage in the order they ran, and the periodic
    count of a long stage; never the bars drawn in one block after ``wrote`` and the table."""
    from vidseg.cli import progress

    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)  # every step of a counted stage prints its count
    video = video_factory("clip.mp4", num_frames=30, height=48, width=80)
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_model_dir, "--out", tmp_path / "out",
                     "--no-crf", "--no-overlay", "--no-export-heatmaps")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    wrote = next(i for i, line in enumerate(lines) if line.startswith("wrote"))
    expected = ["load", "encode text", "decode window 1/", "VAE encode window 1/", "DDIM inversion window 1/",
                "read maps window 1/", "decode window 2/", "refine + export"]
    finished = [line for line in lines[:wrote] if "done in" in line]
    positions = [next(i for i, line in enumerate(finished) if line.startswith(stage)) for stage in expected]
    assert positions == sorted(positions), finished
    assert finished[-1].startswith("refine + export  30/30  done in")
    assert any(line.startswith("refine + export  16/30") for line in lines[:wrote])  # the count as it goes
    assert not any("━" in line for line in lines[:wrote]) and lines[-1].startswith("└"), "no bars after the table"
    assert "clip: 30 frames" in result.output[result.output.index("wrote"):]


def test_a_log_does_not_call_a_failed_stage_done(video_factory, tmp_path):
    video = video_factory("clip.mp4", num_frames=9)
    result = run_cli("predict", video, "--classes", "dog", "--model", "nobody/no-such-model", "--out", tmp_path / "o")
    assert_one_line_error(result, 2, "nobody/no-such-model")
    assert "done in" not in result.output, result.output
