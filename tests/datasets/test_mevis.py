"""The MeViS_504 reader: shards as lists or wrapped lists, the "st" concept list, video lookup, clear errors, and
the official map files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.mevis_data import NAMES, make_mevis
from vidseg.datasets.mevis import (
    OFFICIAL_KEYS, MevisClip, judged_concept, mevis_clips, read_mevis_shard, st_concepts, write_official_maps,
)
from vidseg.errors import ConfigError, DatasetError


@pytest.fixture
def mevis(tmp_path: Path) -> tuple[Path, Path]:
    return make_mevis(tmp_path)


def _clip(concepts, verbs, motion_idx=None) -> MevisClip:
    return MevisClip("x_1", Path("x_1.mp4"), "cap", tuple(concepts), tuple(verbs), motion_idx, Path("s.json"))


def test_clips_from_both_shard_shapes_sorted_by_name(mevis) -> None:
    json_dir, video_dir = mevis
    clips = mevis_clips(json_dir, video_dir)
    assert [c.name for c in clips] == NAMES
    a1, a2, b1 = clips
    assert a1.video == video_dir / "vidA_1.mp4" and a1.source == a1.video
    assert a1.caption == "a dog walks over the grass, then stands"
    assert (a1.concepts, a1.verbs, a1.motion_idx, a1.camera) == (("dog", "grass"), ("walking", "standing"), -2,
                                                                 "static")
    assert a1.all_concepts == ["dog", "grass", "walking", "standing"]
    assert a2.all_concepts == ["person", "ball", "kicking"]  # the second "person" dropped
    assert b1.shard_file == json_dir / "shard_01.json" and b1.motion_idx is None


def test_st_concepts_keep_order_and_drop_exact_duplicates_only() -> None:
    assert st_concepts(["dog", "Dog", "dog"], ["walking", "dog", "walking"]) == ["dog", "Dog", "walking"]


def test_judged_concept_reads_motion_idx_as_a_negative_index_else_the_last_verb() -> None:
    clip = _clip(["man", "ball"], ["juggling", "walking", "standing"], motion_idx=-2)
    assert clip.all_concepts[judged_concept(clip)] == "walking"
    assert clip.all_concepts[judged_concept(clip, "last_verb")] == "standing"
    for bad in (None, 0, 3, -6):  # absent, not negative, or outside the 5 concepts + verbs
        clip = _clip(["man", "ball"], ["juggling", "walking", "standing"], motion_idx=bad)
        assert judged_concept(clip) == 4
    # Read before duplicates are dropped: -1 is the verb "dog", the row of the concept "dog".
    dup = _clip(["dog", "cat"], ["running", "dog"], motion_idx=-1)
    assert dup.all_concepts == ["dog", "cat", "running"] and judged_concept(dup) == 0
    assert judged_concept(_clip(["dog", "cat"], [], motion_idx=None)) == 1  # no verbs: the last concept
    with pytest.raises(ConfigError, match="rule"):
        judged_concept(dup, "first")


@pytest.mark.parametrize("content, words", [
    ('"just a string"', "neither a JSON list"),
    ("[1, 2]", "neither a JSON list"),
    ('{"a": [], "b": []}', "holding 2 lists"),
    ("[{]", "not valid JSON"),
])
def test_a_shard_that_is_not_a_list_of_entries_is_one_line(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(DatasetError, match=words) as info:
        read_mevis_shard(tmp_path / "bad.json")
    assert "bad.json" in str(info.value) and "\n" not in str(info.value)


def test_entry_problems_name_the_shard_and_entry(mevis) -> None:
    json_dir, video_dir = mevis
    (json_dir / "shard_02.json").write_text(json.dumps([{"video_path": "v/x.mp4", "caption": "c", "concepts": []}]))
    with pytest.raises(DatasetError, match=r"shard_02.json entry 0 has no object"):
        mevis_clips(json_dir, video_dir)
    (json_dir / "shard_02.json").write_text(json.dumps(
        [{"video_path": "v/x.mp4", "caption": "c", "concepts": ["a", 3], "object": []}]))
    with pytest.raises(DatasetError, match=r"shard_02.json entry 0: concepts must be a list"):
        mevis_clips(json_dir, video_dir)


def test_two_entries_for_one_video_stem_are_an_error(mevis) -> None:
    json_dir, video_dir = mevis
    (json_dir / "shard_02.json").write_text(json.dumps([dict(json.loads((json_dir / "shard_00.json").read_text())[0],
                                                             video_path="elsewhere/vidA_1.mp4")]))
    with pytest.raises(DatasetError, match=r"vidA_1.*shard_00.json and shard_02.json entry 0"):
        mevis_clips(json_dir, video_dir)


def test_a_missing_video_names_the_entry_and_folder_unless_allowed(mevis) -> None:
    json_dir, video_dir = mevis
    (video_dir / "vidA_2.mp4").unlink()
    with pytest.raises(DatasetError) as info:
        mevis_clips(json_dir, video_dir)
    message = str(info.value)
    assert "shard_00.json entry 1" in message and "vidA_2.mp4" in message and str(video_dir) in message
    clips = mevis_clips(json_dir, video_dir, allow_missing=True)
    assert [c.name for c in clips] == NAMES and not clips[1].video.exists()


def test_missing_folders_and_empty_folders_are_one_line(tmp_path: Path, mevis) -> None:
    json_dir, video_dir = mevis
    with pytest.raises(DatasetError, match="does not exist"):
        mevis_clips(tmp_path / "nope", video_dir)
    with pytest.raises(DatasetError, match="video folder"):
        mevis_clips(json_dir, tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"no \*.json"):
        mevis_clips(video_dir, video_dir)


def test_official_maps_are_float32_c_contiguous_under_their_official_names(tmp_path: Path) -> None:
    assert OFFICIAL_KEYS == {"imap": "sel_imap_layers", "gramcol": "imap_layers",
                             "cross_attention": "cross_attention_maps_layers",
                             "concept_attention": "concept_attention_maps_layers"}
    imap = torch.arange(2 * 13 * 3 * 4, dtype=torch.float16).reshape(2, 13, 3, 4)
    gramcol = np.arange(2 * 13 * 3 * 4, dtype=np.float64).reshape(4, 3, 13, 2).transpose(3, 2, 1, 0)  # strided
    written = write_official_maps(tmp_path, {"imap": imap, "gramcol": gramcol})
    npy = tmp_path / "npy"
    assert written == {"imap": npy / "sel_imap_layers.npy", "gramcol": npy / "imap_layers.npy"}
    assert sorted(p.name for p in (tmp_path / "npy").iterdir()) == ["imap_layers.npy", "sel_imap_layers.npy"]
    back = np.load(written["imap"])
    assert back.dtype == np.float32 and back.flags.c_contiguous and back.shape == (2, 13, 3, 4)
    np.testing.assert_array_equal(back, imap.float().numpy())
    back = np.load(written["gramcol"])
    assert back.dtype == np.float32 and back.shape == (2, 13, 3, 4)
    np.testing.assert_array_equal(back, gramcol.astype(np.float32))
    with pytest.raises(ConfigError, match="no official MeViS file for map kind 'saliency'"):
        write_official_maps(tmp_path, {"saliency": imap})
    with pytest.raises(ConfigError, match=r"\[C, F, h, w\]"):
        write_official_maps(tmp_path, {"imap": imap[0]})
