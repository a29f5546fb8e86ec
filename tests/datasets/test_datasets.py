"""VSPW class table and id conventions; discovering the videos of VSPW trees, frame folders and video files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.datasets import (
    DatasetVideo, class_id, discover_videos, export_id, gt_as_evaluated, gt_class_ids, gt_class_prompts,
    label_to_vspw_ids, vspw_classes,
)
from vidseg.datasets.vspw import export_id_range
from vidseg.errors import ConfigError, DatasetError


def test_class_table_matches_the_vspw_order() -> None:
    classes = vspw_classes()
    assert len(classes) == 124 and [c.id for c in classes] == list(range(124))
    assert (classes[0].name, classes[7].name, classes[60].name, classes[123].name) == (
        "wall", "handrail_or_fence", "person", "train")
    assert classes[7].prompt == "fence" and classes[7].raw_id == 8
    assert all("_" not in c.prompt for c in classes)
    assert len({c.prompt.lower() for c in classes}) == 124


def test_class_lookup_accepts_raw_names_and_prompts() -> None:
    assert class_id("handrail_or_fence") == class_id("fence") == class_id("Handrail or Fence") == 7
    assert class_id("Microwave_oven") == class_id("microwave oven") == 101
    # Any alternative of an a_or_b name, in any case.
    assert class_id("cup") == class_id("Bottle") == class_id("bottle_or_cup") == 84
    assert class_id("storage rack") == class_id("SHOWCASE") == 75 and class_id("well lid") == 26
    with pytest.raises(ConfigError, match="did you mean person\\?"):
        class_id("persn")


def test_id_spaces() -> None:
    assert export_id(0) == 0 and export_id(123) == 123
    assert export_id(0, "raw") == 1 and export_id(123, "raw") == 124
    assert export_id_range("contiguous") == (0, 123) and export_id_range("raw") == (1, 124)
    assert label_to_vspw_ids(["person", "sky"]).tolist() == [-1, 60, 28]
    assert label_to_vspw_ids(["person", "sky"], "raw").tolist() == [-1, 61, 29]
    with pytest.raises(ConfigError, match="same VSPW class"):
        label_to_vspw_ids(["fence", "handrail_or_fence"])
    with pytest.raises(ConfigError, match="choose one of"):
        export_id(0, "zero-based")


def test_gt_mapping_follows_the_readme() -> None:
    raw = np.array([[0, 1, 2], [124, 255, 60]], dtype=np.uint8)
    assert gt_as_evaluated(raw).tolist() == [[255, 0, 1], [123, 255, 59]]
    assert gt_as_evaluated(raw, "raw").tolist() == raw.tolist()


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _vspw_video(root: Path, name: str, stems: list[str], masks: bool = True, size: tuple[int, int] = (6, 8)) -> None:
    for stem in stems:
        _save(root / "data" / name / "origin" / f"{stem}.jpg", np.zeros((*size, 3)))
        if masks:
            _save(root / "data" / name / "mask" / f"{stem}.png", np.full(size, 3))


def test_vspw_tree_with_split(tmp_path: Path) -> None:
    _vspw_video(tmp_path, "2_b", ["00000009", "00000003"], size=(6, 8))
    _vspw_video(tmp_path, "1_a", ["00000001"], masks=False)
    _vspw_video(tmp_path, "3_c", ["00000001"])
    (tmp_path / "val.txt").write_text("3_c\n2_b")  # no trailing newline: names are still read whole
    videos = discover_videos(tmp_path, split="val.txt")
    assert [v.name for v in videos] == ["2_b", "3_c"]
    b = videos[0]
    assert b.source == tmp_path / "data" / "2_b" / "origin" and b.mask_dir == tmp_path / "data" / "2_b" / "mask"
    assert b.output_stems == ("00000003", "00000009") and b.gt_size == (6, 8)
    assert b.mask_paths[0].name == "00000003.png"
    everything = discover_videos(tmp_path)
    assert [v.name for v in everything] == ["1_a", "2_b", "3_c"]
    assert everything[0].mask_dir is None and everything[0].output_stems == ("00000001",)
    assert gt_class_ids(b.mask_paths) == [2] and gt_class_prompts(b.mask_paths) == ["door"]


def test_vspw_layout_errors(tmp_path: Path) -> None:
    _vspw_video(tmp_path, "1_a", ["00000001"])
    (tmp_path / "val.txt").write_text("1_a\n2_missing\n")
    with pytest.raises(DatasetError, match="1 videos of val.txt are not in .*2_missing"):
        discover_videos(tmp_path, split="val.txt")
    with pytest.raises(DatasetError, match="split file test.txt not found"):
        discover_videos(tmp_path, split="test.txt")
    (tmp_path / "data" / "4_empty" / "origin").mkdir(parents=True)
    with pytest.raises(DatasetError, match="4_empty/origin holds no frames"):
        discover_videos(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        discover_videos(tmp_path / "nowhere")


def test_frame_folders_video_files_and_lists(tmp_path: Path, video_factory) -> None:
    frames = tmp_path / "frames"
    for name in ("walk", "jump"):
        for t in range(3):
            _save(frames / name / f"{t:05d}.jpg", np.zeros((4, 4, 3)))
    (frames / "notes").mkdir()  # a folder without images is not a video
    assert [(v.name, len(v.output_stems)) for v in discover_videos(frames)] == [("jump", 3), ("walk", 3)]

    clip = video_factory("clips/a.mp4", num_frames=3)
    video_factory("clips/b.webm", num_frames=3, codec="libvpx-vp9")
    videos = discover_videos(clip.parent)
    assert [v.name for v in videos] == ["a", "b"] and videos[0] == DatasetVideo("a", clip, None, (), None)
    assert discover_videos(clip) == [videos[0]]

    listing = tmp_path / "list.txt"
    listing.write_text(f"# my videos\nclips/a.mp4\n\n{frames / 'walk'}\n")
    assert [v.name for v in discover_videos(listing)] == ["a", "walk"]
    listing.write_text("clips/a.mp4\nclips/gone.mp4\n")
    with pytest.raises(DatasetError, match="gone.mp4 does not exist"):
        discover_videos(listing)


def test_name_clashes_and_empty_roots(tmp_path: Path, video_factory) -> None:
    video_factory("x/a.mp4", num_frames=2)
    video_factory("x/a.webm", num_frames=2, codec="libvpx-vp9")
    with pytest.raises(DatasetError, match="would both write a/"):
        discover_videos(tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no videos found"):
        discover_videos(tmp_path / "empty")
    with pytest.raises(DatasetError, match="--split needs a VSPW tree"):
        discover_videos(tmp_path / "x", split="val.txt")
