"""Export formats: every writer's output read back (PNG indices, RLE, npz, overlay video)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.errors import ConfigError
from vidseg.export import (
    CocoRleWriter, OverlayVideoWriter, PaletteMaskWriter, VspwMaskWriter, make_writers, read_saliency_npz,
    resolve_background, voc_palette, write_saliency_npz,
)
from vidseg.export.overlay import overlay_frame


def random_labels(num_frames: int, height: int, width: int, num_labels: int, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W] blocky label maps with values 0..num_labels-1."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, num_labels, size=(num_frames, (height + 3) // 4, (width + 3) // 4), dtype=np.uint8)
    return small.repeat(4, axis=1).repeat(4, axis=2)[:, :height, :width].copy()


def test_palette_png_round_trip(tmp_path: Path) -> None:
    labels = random_labels(3, 17, 23, 6)
    writer = PaletteMaskWriter(tmp_path / "masks")
    for t, frame_labels in enumerate(labels):
        writer.add(t, f"{t:05d}", frame_labels)
    writer.close()
    for t in range(3):
        with Image.open(tmp_path / "masks" / f"{t:05d}.png") as image:
            assert image.mode == "P"
            assert np.array_equal(np.array(image), labels[t])
            palette = np.array(image.getpalette()[:9]).reshape(3, 3)
    assert palette.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]] == voc_palette()[:3].tolist()


def test_background_resolves_to_nearest_class() -> None:
    labels = np.array([[1, 0, 0, 2, 2]], np.uint8)
    assert resolve_background(labels, fallback=1).tolist() == [[1, 1, 2, 2, 2]]
    assert resolve_background(np.zeros((2, 2), np.uint8), fallback=3).tolist() == [[3, 3], [3, 3]]
    seeds = np.zeros((6, 6), np.uint8)
    seeds[0, 0], seeds[5, 5] = 4, 7
    rows, cols = np.indices(seeds.shape)
    nearer_first = rows**2 + cols**2 < (rows - 5) ** 2 + (cols - 5) ** 2
    off_diagonal = rows + cols != 5  # the anti-diagonal is equidistant
    resolved = resolve_background(seeds, fallback=1)
    assert np.array_equal(resolved[off_diagonal], np.where(nearer_first, 4, 7)[off_diagonal])


def test_vspw_png_round_trip_never_writes_255(tmp_path: Path) -> None:
    writer = VspwMaskWriter(tmp_path, np.array([-1, 60, 28]), size=(2, 10))
    writer.add(0, "00000000", np.zeros((1, 5), np.uint8))  # nothing claimed yet: the first class
    writer.add(1, "00000003", np.array([[1, 0, 0, 2, 2]], np.uint8))  # resized to 2 x 10 (nearest)
    writer.add(2, "00000006", np.zeros((1, 5), np.uint8))  # nothing claimed: the class written most so far
    writer.close()
    read = {p.stem: np.array(Image.open(p)) for p in tmp_path.glob("*.png")}
    assert Image.open(tmp_path / "00000003.png").mode == "L"
    assert read["00000000"].tolist() == [[60] * 10] * 2
    assert read["00000003"].tolist() == [[60] * 4 + [28] * 6] * 2
    assert read["00000006"].tolist() == [[60] * 10] * 2  # person: 20 + 8 pixels against sky's 12
    assert all(255 not in a for a in read.values())


def test_vspw_writer_refuses_ids_outside_the_space(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the contiguous VSPW ids 0..123"):
        VspwMaskWriter(tmp_path, np.array([-1, 255]))
    with pytest.raises(ValueError, match="outside the raw VSPW ids 1..124"):
        VspwMaskWriter(tmp_path, np.array([-1, 0]), id_space="raw")
    writer = VspwMaskWriter(tmp_path, np.array([-1, 124]), id_space="raw")
    with pytest.raises(ValueError, match="label 2 has no class"):
        writer.add(0, "x", np.array([[1, 2]], np.uint8))


def test_coco_rle_round_trip(tmp_path: Path) -> None:
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    labels = random_labels(4, 19, 26, 4, seed=1)
    labels[2] = 0  # a frame with background only gets no record
    writer = CocoRleWriter(tmp_path / "rle.json", ["person", "dog", "sky"])
    for t, frame_labels in enumerate(labels):
        writer.add(t * 2, f"{t:05d}", frame_labels)
    writer.close()
    doc = json.loads((tmp_path / "rle.json").read_text())
    assert doc["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "sky"}]
    assert [im["file_name"] for im in doc["images"]] == ["00000", "00001", "00002", "00003"]
    decoded = np.zeros_like(labels)
    for ann in doc["annotations"]:
        t = ann["image_id"] // 2
        mask = mask_api.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
        assert ann["area"] == mask.sum() and not (decoded[t] & mask).any()
        decoded[t][mask.astype(bool)] = ann["category_id"]
    assert np.array_equal(decoded, labels)
    assert {ann["image_id"] for ann in doc["annotations"]} == {0, 2, 6}
    assert len(COCO(str(tmp_path / "rle.json")).getAnnIds()) == len(doc["annotations"])


def test_saliency_npz_round_trip(tmp_path: Path) -> None:
    saliency = np.random.default_rng(2).normal(size=(3, 13, 6, 9)).astype(np.float32)
    meta = {"classes": ["a", "b", "c"], "timestep": 399, "missing": float("nan")}
    write_saliency_npz(tmp_path / "s.npz", saliency, meta)
    back, meta_back = read_saliency_npz(tmp_path / "s.npz")
    assert back.dtype == np.float16 and np.array_equal(back, saliency.astype(np.float16))
    assert meta_back == {"classes": ["a", "b", "c"], "timestep": 399, "missing": None}
    with pytest.raises(ValueError, match=r"\[C, F_lat, h, w\]"):
        write_saliency_npz(tmp_path / "bad.npz", saliency[0], meta)


def test_overlay_video_round_trip(tmp_path: Path) -> None:
    import av

    labels = random_labels(6, 121, 161, 3, seed=3)  # odd size: padded to 162 x 122 for 4:2:0
    frames = np.full((6, 121, 161, 3), 200, np.uint8)
    writer = OverlayVideoWriter(tmp_path / "overlay.mp4", ["person", "dog"], fps=12.5)
    for t in range(6):
        writer.add(t, f"{t:05d}", labels[t], frames[t])
    writer.close()
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (162, 122)
        assert float(stream.average_rate) == pytest.approx(12.5)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6
    # Away from the legend (top-left), the decoded frame is the tinted frame up to compression.
    expected = overlay_frame(frames[5], labels[5])
    error = np.abs(decoded[5][60:121, 80:161].astype(int) - expected[60:121, 80:161]).mean()
    assert error < 12


def test_make_writers_layouts(tmp_path: Path) -> None:
    labels = random_labels(2, 8, 8, 3)
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    expected = {
        "palette": ["masks/00000.png", "masks/00001.png", "overlay.mp4"],
        "vspw": ["masks/00000.png", "masks/00001.png", "overlay.mp4"],
        "coco": ["coco_rle.json", "overlay.mp4"],
        "npz": ["overlay.mp4"],
    }
    for fmt, files in expected.items():
        writers = make_writers(fmt, tmp_path / fmt, ["person", "sky"], overlay=True, fps=8)
        for t in range(2):
            for writer in writers:
                writer.add(t, f"{t:05d}", labels[t], frames[t])
        for writer in writers:
            writer.close()
        assert sorted(str(p.relative_to(tmp_path / fmt)) for p in (tmp_path / fmt).rglob("*.*")) == files, fmt
    flat = make_writers("vspw", tmp_path / "flat", ["person", "sky"], flat=True, id_space="raw", size=(4, 4))
    flat[0].add(0, "00000007", np.array([[1, 2], [0, 0]], np.uint8))
    assert np.array(Image.open(tmp_path / "flat" / "00000007.png")).tolist() == [[61, 61, 29, 29]] * 4
    with pytest.raises(ConfigError, match="'unicorn' is not a VSPW class"):
        make_writers("vspw", tmp_path / "x", ["person", "unicorn"])
    with pytest.raises(ConfigError, match="needs one per class"):
        make_writers("vspw", tmp_path / "x", ["person"], label_to_id=np.array([-1, 1, 2]))
    with pytest.raises(ConfigError, match="choose one of"):
        make_writers("png", tmp_path / "x", ["person"])


# -- what writers consume, and what the export computes for them ------------------------------------------------


def synthetic_result(video: Path, classes: list[str], seed: int = 0):
    """A ``SaliencyResult`` of random maps ``[C, 3, 4, 6]`` per 9-frame window for ``video``, with no model."""
    import torch

    from vidseg.result import SaliencyResult
    from vidseg.video.read import open_video
    from vidseg.video.sample import blend_windows, plan_sampling

    with open_video(video) as reader:
        info = reader.info
    plan = plan_sampling(info.num_frames, info.fps, sample_fps=8.0, window_frames=9, window_overlap=2)
    generator = torch.Generator().manual_seed(seed)
    window_maps = [3 * torch.randn(len(classes), 3, 4, 6, generator=generator) for _ in plan.windows]
    return SaliencyResult(source=video, classes=classes, prompt="", info=info, plan=plan, window_maps=window_maps,
                          sampled=blend_windows(plan, window_maps), valid_box=(0, 0, info.height, info.width),
                          timestep=400.0)


def test_every_writer_declares_what_its_add_takes(tmp_path: Path) -> None:
    """Each registered format's and view's writer consumes known things, and ``add`` takes exactly those
    (required ones at least); the maps writer has ``add_maps``."""
    import inspect

    from vidseg.export import SaliencyNpzWriter
    from vidseg.registry import EXPORT_FORMATS

    writers = [SaliencyNpzWriter(tmp_path / "saliency.npz")]
    for fmt in EXPORT_FORMATS.names():
        writers += make_writers(fmt, tmp_path / fmt, ["person", "sky"], overlay=True, heatmaps=True,
                                frame_indices=[0, 1])
    kinds = {type(w).__name__: w for w in writers}
    assert set(kinds) == {"SaliencyNpzWriter", "PaletteMaskWriter", "VspwMaskWriter", "CocoRleWriter",
                          "OverlayVideoWriter", "HeatmapVideoWriter", "PreviewSheet"}
    assert kinds["SaliencyNpzWriter"].consumes == {"maps"} and callable(kinds["SaliencyNpzWriter"].add_maps)
    assert kinds["HeatmapVideoWriter"].consumes == {"frame", "probs"}  # the heatmap video needs no labels
    for name, writer in kinds.items():
        assert writer.consumes and writer.consumes <= {"maps", "frame", "probs", "labels"}, name
        per_frame = writer.consumes - {"maps"}
        if per_frame:
            params = list(inspect.signature(writer.add).parameters.values())[2:]  # after frame_idx, name
            required = {p.name for p in params if p.default is inspect.Parameter.empty}
            assert required <= per_frame <= {p.name for p in params}, name


class Recorder:
    """A writer that consumes ``consumes`` and records what it is fed."""

    def __init__(self, consumes: set[str], uses_background: bool = True) -> None:
        self.consumes = frozenset(consumes)
        self.uses_background = uses_background
        self.maps: list = []
        self.frames: list[tuple[int, str, dict]] = []
        self.closed = False

    def add_maps(self, result) -> None:
        self.maps.append(result)

    def add(self, frame_idx: int, name: str, **consumed) -> None:
        self.frames.append((frame_idx, name, consumed))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def stage_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of what post-processing runs: video opened for frames, probabilities, labels (upsample + CRF)."""
    import vidseg.postprocess as postprocess
    from vidseg.result import SaliencyResult

    calls = {"open_video": 0, "saliency_to_probs": 0, "to_labels": 0}
    for owner, name in ((SaliencyResult, "open_video"), (postprocess, "saliency_to_probs"), (postprocess, "to_labels")):
        original = getattr(owner, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("consumes, expected_calls", [
    ({"maps"}, {"open_video": 0, "saliency_to_probs": 0, "to_labels": 0}),
    ({"probs"}, {"open_video": 0, "saliency_to_probs": 2, "to_labels": 0}),
    ({"frame"}, {"open_video": 1, "saliency_to_probs": 0, "to_labels": 0}),
    ({"frame", "probs", "labels"}, {"open_video": 1, "saliency_to_probs": 2, "to_labels": 2}),
])
def test_feed_writers_computes_only_what_the_writers_consume(video_factory, stage_calls, consumes, expected_calls):
    from vidseg.config import VidsegConfig
    from vidseg.export.run import feed_writers

    video = video_factory("clip.mp4", num_frames=20, height=48, width=64)  # 20 frames: two chunks of 16
    result = synthetic_result(video, ["person", "dog"])
    maps_writer, writer = Recorder({"maps"}), Recorder(consumes)
    config = VidsegConfig()
    config.crf.enabled = False
    indices = np.arange(20)
    summary = feed_writers(result, [maps_writer, writer], config, indices, workers=1)
    assert stage_calls == expected_calls
    assert maps_writer.maps == [result] and not maps_writer.frames and maps_writer.closed and writer.closed
    per_frame = consumes - {"maps"}
    assert [(i, name) for i, name, _ in writer.frames] == ([(i, f"{i:05d}") for i in indices] if per_frame else [])
    assert all(set(consumed) == per_frame for _, _, consumed in writer.frames)
    shapes = {"frame": (48, 64, 3), "probs": (3, 4, 6), "labels": (48, 64)}
    assert all(v.shape == shapes[k] for _, _, consumed in writer.frames for k, v in consumed.items())
    # The summary counts labels only when they were made for a writer; otherwise it has the peak saliency and the
    # presence decision alone.
    stats = summary.as_dict()["dog"]
    always = {"peak_saliency", "presence_score", "present"}
    assert set(stats) == (always | {"frames_present", "mean_area_percent"} if "labels" in consumes else always)
    assert stats["peak_saliency"] == pytest.approx(float(result.sampled[1].max()), abs=1e-4)


def test_a_writer_without_background_makes_every_writer_get_background_free_probs(video_factory):
    from vidseg.config import VidsegConfig
    from vidseg.export.run import feed_writers

    result = synthetic_result(video_factory("clip.mp4", num_frames=9, height=48, width=64), ["person", "dog"])
    vspw_like, other = Recorder({"labels"}, uses_background=False), Recorder({"probs"})
    config = VidsegConfig()
    config.crf.enabled = False
    feed_writers(result, [vspw_like, other], config, np.arange(9), workers=1)
    assert all((c["probs"][0] == 0).all() for _, _, c in other.frames)  # channel 0: no background
    assert all((c["labels"] > 0).all() for _, _, c in vspw_like.frames)
    assert config.probs.background is not None  # the caller's config is left as it was
    with pytest.raises(ValueError, match="consumes"):
        feed_writers(result, [Recorder({"masks"})], config, np.arange(9), workers=1)
