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
