"""The dataset labeling runner: resumable after SIGKILL and Ctrl-C, failures isolated, shards disjoint and complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidseg.datasets import DatasetVideo, discover_videos
from vidseg.errors import ConfigError
from vidseg.runners import is_complete, label_dataset, parse_shard, shard_videos
from vidseg.runners.resumable import MARKER_NAME, TMP_DIR_NAME

NAMES = [f"{k}_vid" for k in range(6)]


@pytest.fixture
def vspw_root(tmp_path: Path) -> Path:
    """Six videos of three 4x5 frames with GT masks."""
    root = tmp_path / "vspw"
    for name in NAMES:
        for t in range(3):
            for sub, array in (("origin", np.zeros((4, 5, 3))), ("mask", np.full((4, 5), 2))):
                path = root / "data" / name / sub / f"{t:08d}.{'jpg' if sub == 'origin' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(path)
    return root


class FakeSegmenter:
    """Writes one PNG per output stem (value = position of the video), or fails on request."""

    def __init__(self, fail: dict[str, BaseException] | None = None, skip_files: bool = False):
        self.calls: list[str] = []
        self.fail = fail or {}
        self.skip_files = skip_files

    def __call__(self, video: DatasetVideo, tmp: Path) -> None:
        self.calls.append(video.name)
        stems = video.output_stems[:1] if self.skip_files else video.output_stems
        for stem in stems:
            Image.fromarray(np.full(video.gt_size, NAMES.index(video.name), np.uint8)).save(tmp / f"{stem}.png")
        if video.name in self.fail:
            raise self.fail[video.name]


def _statuses(summary) -> dict[str, str]:
    return {o.name: o.status for o in summary.outcomes}


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from PIL import Image
    from vidseg.datasets import discover_videos
    from vidseg.runners import label_dataset

    root, out, signal_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def segment(video, tmp):
        for i, stem in enumerate(video.output_stems):
            Image.fromarray(np.full(video.gt_size, 9, np.uint8)).save(tmp / f"{stem}.png")
            if video.name == "3_vid" and i == 1:  # half-way through the fourth video: wait to be killed
                signal_file.write_text(str(tmp))
                time.sleep(120)

    label_dataset(discover_videos(root), out, segment)
""")


def test_rerun_after_sigkill_redoes_only_unfinished_videos(vspw_root: Path, tmp_path: Path) -> None:
    out, signal_file = tmp_path / "pred", tmp_path / "in_flight"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(vspw_root), str(out), str(signal_file)])
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            assert child.poll() is None, "the labeling process ended before reaching the fourth video"
            assert time.monotonic() < deadline, "the labeling process never reached the fourth video"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    # Killed mid-video: three complete videos, nothing of the fourth outside the temporary area.
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [*NAMES[:3], "label_log.json"]
    assert Path(signal_file.read_text()).is_relative_to(out / TMP_DIR_NAME)
    log = json.loads((out / "label_log.json").read_text())
    assert [v["status"] for v in log["videos"]] == ["done"] * 3

    segment = FakeSegmenter()
    summary = label_dataset(discover_videos(vspw_root), out, segment)
    assert segment.calls == NAMES[3:]
    assert _statuses(summary) == {**{n: "skipped" for n in NAMES[:3]}, **{n: "done" for n in NAMES[3:]}}
    assert summary.ok and not (out / TMP_DIR_NAME).exists()
    for name in NAMES:
        assert is_complete(out / name, [f"{t:08d}.png" for t in range(3)])
        first_run = name in NAMES[:3]
        assert np.array(Image.open(out / name / "00000002.png")).max() == (9 if first_run else NAMES.index(name))


def test_incomplete_outputs_are_redone(vspw_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    videos = discover_videos(vspw_root)
    label_dataset(videos, out, FakeSegmenter())
    (out / "1_vid" / "00000001.png").unlink()  # lost file
    (out / "2_vid" / "00000000.png").write_bytes(b"")  # truncated file
    (out / "3_vid" / MARKER_NAME).unlink()  # folder not finished by the runner
    segment = FakeSegmenter()
    summary = label_dataset(videos, out, segment)
    assert segment.calls == ["1_vid", "2_vid", "3_vid"]
    assert summary.ok and all(is_complete(out / n) for n in NAMES)
    assert (out / "1_vid" / "00000001.png").is_file()
    # Settings changed: a different fingerprint makes every folder stale.
    segment = FakeSegmenter()
    label_dataset(videos, out, segment, fingerprint="other settings")
    assert segment.calls == NAMES


def test_failing_video_is_reported_and_skipped(vspw_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    segment = FakeSegmenter(fail={"2_vid": RuntimeError("CUDA out of memory\nlong details")})
    events: list[tuple[str, str]] = []
    summary = label_dataset(discover_videos(vspw_root), out, segment,
                            on_event=lambda e: events.append((e.kind, e.video.name)))
    assert _statuses(summary)["2_vid"] == "failed" and len(summary.with_status("done")) == 5
    failed = summary.with_status("failed")[0]
    assert failed.reason == "RuntimeError: CUDA out of memory" and "Traceback" in failed.traceback
    assert not summary.ok and "failed 2_vid: RuntimeError: CUDA out of memory" in summary.lines()
    assert not (out / "2_vid").exists() and not (out / TMP_DIR_NAME).exists()
    assert events[:2] == [("start", "0_vid"), ("done", "0_vid")] and ("failed", "2_vid") in events
    log = json.loads((out / "label_log.json").read_text())
    assert log["counts"] == {"done": 5, "skipped": 0, "failed": 1, "interrupted": 0, "retried": 0}
    # Too few files written also fails the video, with the missing names.
    summary = label_dataset(discover_videos(vspw_root), out, FakeSegmenter(skip_files=True))
    assert summary.with_status("failed")[0].reason.startswith("wrote 1 of 3 expected files; missing 00000001.png")


def test_ctrl_c_stops_cleanly_and_resumes(vspw_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    videos = discover_videos(vspw_root)
    summary = label_dataset(videos, out, FakeSegmenter(fail={"1_vid": KeyboardInterrupt()}))
    assert summary.interrupted and _statuses(summary) == {"0_vid": "done", "1_vid": "interrupted"}
    assert summary.lines()[0] == "1 done, 0 skipped, 0 failed of 6 videos (shard 0/1); interrupted: rerun the same " \
        "command to resume"
    assert sorted(p.name for p in out.iterdir()) == ["0_vid", "label_log.json"]  # no half-written 1_vid, no temp
    assert json.loads((out / "label_log.json").read_text())["interrupted"] is True
    segment = FakeSegmenter()
    assert label_dataset(videos, out, segment).ok and segment.calls == NAMES[1:]


def test_shards_cover_every_video_exactly_once(vspw_root: Path, tmp_path: Path) -> None:
    videos = discover_videos(vspw_root)
    parts = [shard_videos(list(reversed(videos)), (i, 4)) for i in range(4)]
    names = [v.name for part in parts for v in part]
    assert sorted(names) == NAMES and len(names) == len(set(names))
    out = tmp_path / "pred"
    segment = FakeSegmenter()
    for i in range(4):
        summary = label_dataset(videos, out, segment, shard=(i, 4))
        assert summary.log_path.name == f"label_log.shard-{i}-of-4.json"
    assert sorted(segment.calls) == NAMES and all(is_complete(out / n) for n in NAMES)
    empty = label_dataset(videos[:2], tmp_path / "few", segment, shard=(3, 4))
    assert empty.outcomes == [] and json.loads(empty.log_path.read_text())["counts"]["done"] == 0
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="must be i/n"):
            parse_shard(bad)


def test_label_then_evaluate_round_trip(tmp_path: Path) -> None:
    """Runner + VSPW writer + evaluator: labels made from the GT at half size, background where the GT is void,
    score perfectly once the writer resizes them to the GT size and resolves background."""
    from vidseg.datasets import gt_class_ids, gt_class_prompts, label_to_vspw_ids, read_mask
    from vidseg.evaluation import evaluate_predictions
    from vidseg.export import make_writers

    root = tmp_path / "vspw"
    rng = np.random.default_rng(0)
    for name in NAMES[:3]:
        blocks = rng.choice([0, 5, 61, 124, 255], size=(3, 4))
        for t in range(10):
            mask = np.kron(np.roll(blocks, t // 4, axis=1), np.ones((2, 2), int))  # 2x2-aligned, shifting
            for sub, array in (("origin", np.zeros((6, 8, 3))), ("mask", mask)):
                path = root / "data" / name / sub / f"{t:08d}.{'jpg' if sub == 'origin' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(path)
    (root / "val.txt").write_text("".join(f"{n}\n" for n in NAMES[:3]))

    def segment(video: DatasetVideo, tmp: Path) -> None:
        class_ids = gt_class_ids(video.mask_paths)  # the zero-shot protocol: classes present in the GT
        names = gt_class_prompts(video.mask_paths)
        label_of_raw = np.zeros(256, np.uint8)  # raw 0 / 255 -> background (label 0)
        label_of_raw[np.array(class_ids) + 1] = np.arange(1, len(class_ids) + 1)
        writers = make_writers("vspw", tmp, names, label_to_id=label_to_vspw_ids(names), flat=True,
                               size=video.gt_size)
        for t, (stem, path) in enumerate(zip(video.output_stems, video.mask_paths)):
            writers[0].add(t, stem, label_of_raw[read_mask(path)][::2, ::2])
        writers[0].close()

    summary = label_dataset(discover_videos(root, split="val.txt"), tmp_path / "pred", segment)
    assert summary.ok and len(summary.with_status("done")) == 3
    scores = evaluate_predictions(tmp_path / "pred", root)
    assert all(scores[k] == 1.0 for k in ("mIoU", "FWIoU", "mAcc", "pAcc"))
    assert all(255 not in read_mask(p) for p in (tmp_path / "pred").rglob("*.png"))
