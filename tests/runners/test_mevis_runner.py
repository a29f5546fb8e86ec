"""The MeViS batch run: the official layout, the judge's grids and requests, resume after an interrupt, shards."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from tests.mevis_data import FRAME_H, FRAME_W, MAP_H, MAP_W, NAMES, FakeLocalizer, fake_maps, make_mevis
from vidseg.datasets.mevis import mevis_clips
from vidseg.errors import ConfigError, DatasetError
from vidseg.evaluation.judge import GRID_FRAMES, GRID_NAMES, LATENT_FRAMES, sampled_grids, write_judge_grids
from vidseg.runners.mevis import JudgeOptions, run_mevis
from vidseg.runners.resumable import MARKER_NAME, TMP_DIR_NAME
from vidseg.video.read import open_video

PROMPT = "FAKE judge system prompt used only by the tests."
JUDGED = {"vidA_1": "walking", "vidA_2": "kicking", "vidB_1": "turning"}  # motion_idx -2, -1, absent (last verb)


@pytest.fixture
def clips(tmp_path: Path):
    return mevis_clips(*make_mevis(tmp_path / "mevis"))


def _requests(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _statuses(summary) -> dict[str, str]:
    return {o.name: o.status for o in summary.outcomes}


def test_official_layout_grids_and_requests(tmp_path: Path, clips) -> None:
    out = tmp_path / "out"
    summary = run_mevis(clips, out, FakeLocalizer(), keys=("sel_imap_layers", "imap_layers"),
                        judge=JudgeOptions(PROMPT))
    assert summary.ok and _statuses(summary) == dict.fromkeys(NAMES, "done")
    for clip in clips:
        folder = out / clip.name
        for key, kind in (("sel_imap_layers", "imap"), ("imap_layers", "gramcol")):
            maps = np.load(folder / "npy" / f"{key}.npy")
            assert maps.dtype == np.float32 and maps.shape == (len(clip.all_concepts), 13, MAP_H, MAP_W)
            np.testing.assert_array_equal(maps, fake_maps(clip, kind))
        info = json.loads((folder / "judge.json").read_text())
        assert info["concept"] == JUDGED[clip.name] and info["custom_id"] == f"{clip.name}::sel_imap_layers"
        assert info["latent_frames"] == list(LATENT_FRAMES)
        # The grids are those of the judged concept's row of npy/sel_imap_layers.npy (and no other row's).
        with open_video(clip.video) as reader:
            samples = reader.read(list(GRID_FRAMES))
        maps = fake_maps(clip)
        for row in range(len(clip.all_concepts)):
            again = write_judge_grids(tmp_path / "again" / clip.name / str(row),
                                      sampled_grids(samples, maps[row][list(LATENT_FRAMES)]))
            same = again["overlay_grid"].read_bytes() == (folder / "overlay_grid.jpg").read_bytes()
            assert same == (row == info["concept_index"]), (clip.name, row)
            assert again["raw_grid"].read_bytes() == (folder / "raw_grid.jpg").read_bytes()
        assert (folder / "labels.txt").read_text().splitlines() == clip.all_concepts
    assert not (out / TMP_DIR_NAME).exists()
    assert summary.judge_requests == out / "judge_requests.jsonl" and summary.num_requests == 3
    requests = _requests(out / "judge_requests.jsonl")
    assert [r["custom_id"] for r in requests] == [f"{n}::sel_imap_layers" for n in NAMES]
    for request, clip in zip(requests, clips):
        assert request["url"] == "/v1/chat/completions" and request["body"]["model"] == "o3-pro"
        system, user = request["body"]["messages"]
        assert system["content"] == PROMPT and user["content"][0]["text"] == f"Prompt: {clip.caption}"
        images = [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in user["content"][1:]]
        assert images == [(out / clip.name / f"{n}.jpg").read_bytes() for n in GRID_NAMES]
    log = json.loads((out / "mevis_log.json").read_text())
    assert log["counts"]["done"] == 3


def test_grid_size_follows_the_frames_or_tile_size(tmp_path: Path, clips) -> None:
    import cv2

    run_mevis(clips[:1], tmp_path / "a", FakeLocalizer(), judge=JudgeOptions(PROMPT))
    run_mevis(clips[:1], tmp_path / "b", FakeLocalizer(), judge=JudgeOptions(PROMPT, tile_size=(16, 24)))
    assert cv2.imread(str(tmp_path / "a" / "vidA_1" / "heatmap_grid.jpg")).shape == (3 * FRAME_H, 4 * FRAME_W, 3)
    assert cv2.imread(str(tmp_path / "b" / "vidA_1" / "heatmap_grid.jpg")).shape == (48, 96, 3)


def test_an_interrupted_run_resumes_without_redoing_finished_clips(tmp_path: Path, clips) -> None:
    out = tmp_path / "out"
    first = FakeLocalizer(fail={"vidA_2": KeyboardInterrupt()})
    summary = run_mevis(clips, out, first, judge=JudgeOptions(PROMPT))
    assert summary.interrupted and first.calls == ["vidA_1", "vidA_2"]
    assert _statuses(summary) == {"vidA_1": "done", "vidA_2": "interrupted"}
    assert not (out / "vidA_2").exists() and not (out / "vidB_1").exists()
    assert [r["custom_id"] for r in _requests(out / "judge_requests.jsonl")] == ["vidA_1::sel_imap_layers"]
    marker = (out / "vidA_1" / MARKER_NAME).read_bytes()

    second = FakeLocalizer()
    summary = run_mevis(clips, out, second, judge=JudgeOptions(PROMPT))
    assert second.calls == ["vidA_2", "vidB_1"] and summary.ok
    assert _statuses(summary) == {"vidA_1": "skipped", "vidA_2": "done", "vidB_1": "done"}
    assert (out / "vidA_1" / MARKER_NAME).read_bytes() == marker  # untouched
    ids = [r["custom_id"] for r in _requests(out / "judge_requests.jsonl")]
    assert ids == [f"{n}::sel_imap_layers" for n in NAMES]  # one per clip, none duplicated

    third = FakeLocalizer()
    run_mevis(clips, out, third, judge=JudgeOptions(PROMPT))
    assert third.calls == [] and len(_requests(out / "judge_requests.jsonl")) == 3


def test_changing_the_judged_concept_redoes_only_the_clips_it_changes(tmp_path: Path, clips) -> None:
    out = tmp_path / "out"
    run_mevis(clips, out, FakeLocalizer(), judge=JudgeOptions(PROMPT))
    again = FakeLocalizer()
    run_mevis(clips, out, again, judge=JudgeOptions(PROMPT, concept="last_verb"))
    assert again.calls == ["vidA_1"]  # motion_idx -2 picked "walking"; the last verb is "standing"
    assert json.loads((out / "vidA_1" / "judge.json").read_text())["concept"] == "standing"
    without = FakeLocalizer()
    run_mevis(clips, out, without)  # no judge: the folders are complete as they are
    assert without.calls == []


def test_shards_are_disjoint_and_complete_with_their_own_files(tmp_path: Path, clips) -> None:
    out = tmp_path / "out"
    calls = []
    for i in range(2):
        localizer = FakeLocalizer()
        summary = run_mevis(clips, out, localizer, shard=(i, 2), judge=JudgeOptions(PROMPT))
        calls.append(localizer.calls)
        assert summary.judge_requests == out / f"judge_requests.shard-{i}-of-2.jsonl"
        assert (out / f"mevis_log.shard-{i}-of-2.json").is_file()
    assert calls == [["vidA_1", "vidB_1"], ["vidA_2"]]
    ids = [[r["custom_id"].split("::")[0] for r in _requests(out / f"judge_requests.shard-{i}-of-2.jsonl")]
           for i in range(2)]
    assert ids == calls
    with pytest.raises(ConfigError, match="shard"):
        run_mevis(clips, out, FakeLocalizer(), shard=(2, 2))


def test_bad_clips_fail_alone_with_one_line_reasons(tmp_path: Path, tmp_path_factory) -> None:
    json_dir, video_dir = make_mevis(tmp_path_factory.mktemp("missing"))
    (video_dir / "vidB_1.mp4").unlink()
    clips = mevis_clips(json_dir, video_dir, allow_missing=True)
    out = tmp_path / "out"
    summary = run_mevis(clips, out, FakeLocalizer(fail={"vidA_1": DatasetError("fake model failure")}),
                        judge=JudgeOptions(PROMPT))
    assert _statuses(summary) == {"vidA_1": "failed", "vidA_2": "done", "vidB_1": "failed"}
    reasons = {o.name: o.reason for o in summary.outcomes}
    assert reasons["vidA_1"] == "fake model failure"
    assert "vidB_1.mp4" in reasons["vidB_1"] and "not in" in reasons["vidB_1"]
    assert not summary.ok and summary.num_requests == 1
    assert not (out / "vidA_1").exists()

    wrong = run_mevis(clips[1:2], tmp_path / "wrong", FakeLocalizer(shape_override=(2, 13, MAP_H, MAP_W)))
    assert wrong.outcomes[0].status == "failed"
    assert "expected float32 [3, 13, h, w]" in wrong.outcomes[0].reason  # 3 concepts, 2 rows written


def test_a_clip_that_is_not_49_frames_fails_when_judged(tmp_path: Path, clips) -> None:
    from tests.conftest import moving_square_frames, write_video

    write_video(clips[0].video, moving_square_frames(30, FRAME_H, FRAME_W))
    summary = run_mevis(clips[:1], tmp_path / "out", FakeLocalizer(), judge=JudgeOptions(PROMPT))
    assert summary.outcomes[0].status == "failed" and "has 30 frames" in summary.outcomes[0].reason
    assert run_mevis(clips[:1], tmp_path / "plain", FakeLocalizer()).ok  # without the judge it is fine
