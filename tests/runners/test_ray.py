"""`vidseg label --ray` on a local CPU Ray cluster with the tiny model: the same files as the plain run, a killed
actor's video requeued, a corrupt video retried then reported while the others finish."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli
from tests.cli.test_label_cli import make_vspw_tree

ray = pytest.importorskip("ray", reason="the Ray runner needs the vidseg[ray] extra")

VOLATILE = {"seconds", "finished", "started", "updated"}  # timings and timestamps: differ between any two runs


def _without_volatile(doc):
    if isinstance(doc, dict):
        return {k: _without_volatile(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_without_volatile(v) for v in doc]
    return doc


def assert_same_outputs(a: Path, b: Path) -> None:
    """File for file; PNGs pixel for pixel; arrays exactly; JSON equal but for timings (and the sizes they move)."""
    files_a = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    files_b = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for name in files_a:
        if name.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))), name
        elif name.endswith(".npz"):
            x, y = np.load(a / name), np.load(b / name)
            assert x.files == y.files
            for key in x.files:
                assert np.array_equal(x[key], y[key]), (name, key)
        elif name.endswith(".json"):
            doc_a, doc_b = (json.loads((root / name).read_text()) for root in (a, b))
            if name.endswith(".vidseg-complete.json"):  # labels.json holds timings, so its size may differ
                doc_a["files"].pop("labels.json"), doc_b["files"].pop("labels.json")
            if name == "label_log.json":
                doc_a.pop("out_dir"), doc_b.pop("out_dir")
                doc_a["videos"].sort(key=lambda v: v["name"]), doc_b["videos"].sort(key=lambda v: v["name"])
            assert _without_volatile(doc_a) == _without_volatile(doc_b), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _vidseg(*args) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("vidseg"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_ray_label_equals_the_plain_run(tiny_model_dir, tmp_path):
    """The real `vidseg label --ray` in a fresh process (it starts a local cluster, labels, stops it) writes what the
    plain run writes; a plain rerun then skips every video."""
    root = tmp_path / "vspw"
    make_vspw_tree(root, {"1_aaa": 10, "2_bbb": 7, "3_ccc": 14})
    common = ["label", root, "--split", "val.txt", "--classes-from-gt", "--model", tiny_model_dir, "-q"]
    plain = run_cli(*common, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    on_ray = _vidseg(*common, "--out", tmp_path / "ray", "--ray")
    assert on_ray.returncode == 0, on_ray.stderr
    assert "3 done, 0 skipped, 0 failed of 3 videos" in on_ray.stderr
    assert_same_outputs(tmp_path / "plain", tmp_path / "ray")
    again = run_cli(*common, "--out", tmp_path / "ray")
    assert again.exit_code == 0 and "0 done, 3 skipped" in again.output, again.output


@pytest.mark.slow
def test_sigterm_stops_the_cluster_and_leaves_only_complete_videos(tiny_model_dir, tmp_path):
    """SIGTERM once the first video is complete: exit 143, every folder in --out complete, no temporary folder, no
    Ray process of the run left."""
    import signal
    import time

    from vidseg.datasets import discover_videos
    from vidseg.runners import is_complete, png_per_stem

    root, out = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {f"{i}_v": 6 + 2 * i for i in range(6)})
    run = subprocess.Popen([shutil.which("vidseg"), "label", str(root), "--classes-from-gt", "--model",
                            str(tiny_model_dir), "--out", str(out), "--ray", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(p.name.endswith("_v") for p in out.glob("*_v")) and run.poll() is None:
        assert time.monotonic() < deadline, "no video finished"
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr
    assert "interrupted: rerun the same command to resume" in " ".join(stderr.split())
    videos = {v.name: v for v in discover_videos(root)}
    written = [p for p in out.iterdir() if p.is_dir()]
    assert written and all(is_complete(p, png_per_stem(videos[p.name])) for p in written), written
    assert json.loads((out / "label_log.json").read_text())["interrupted"] is True
    time.sleep(2)  # the raylet and workers exit as the driver disconnects
    left = subprocess.run(["pgrep", "-s", str(run.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the run still alive: {left}"


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 CPUs for the library-level tests (the runner joins it rather than starting one)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _config(model_dir: Path, **export):
    from vidseg.config import load_config, model_folder_config

    cfg = load_config("tiny", model_dir_config=model_folder_config(str(model_dir)),
                      overrides=[f"model.source={model_dir}", "crf.enabled=false", "upsample.method=bilinear",
                                 *(f"export.{k}={v}" for k, v in export.items())])
    cfg.validate()
    return cfg


@pytest.mark.slow
def test_killed_actor_is_replaced_and_its_video_requeued(cluster, tiny_model_dir, tmp_path):
    from vidseg.datasets import discover_videos
    from vidseg.runners import is_complete, png_per_stem
    from vidseg.runners.ray import RayLabeler

    root, out = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {"1_aaa": 6, "2_bbb": 8})
    labeler = RayLabeler(_config(tiny_model_dir), retries=0)  # the requeue must not spend a retry
    killed = []

    def kill_first_dispatch(event) -> None:  # the test hook: the actor dies with the video in flight
        if event.kind == "start" and not killed:
            killed.append(event.video.name)
            ray.kill(labeler.actors[event.worker])

    videos = discover_videos(root)
    summary = labeler.run(videos, out, on_event=kill_first_dispatch)
    assert killed == ["2_bbb"]  # longest first
    assert summary.ok and sorted(o.name for o in summary.with_status("done")) == ["1_aaa", "2_bbb"]
    assert [o.name for o in summary.retried] == ["2_bbb"] and summary.retried[0].attempts == 2
    assert all(is_complete(out / v.name, png_per_stem(v)) for v in videos)
    assert not (out / ".vidseg-tmp").exists()


@pytest.mark.slow
def test_corrupt_video_is_retried_then_reported(cluster, tiny_model_dir, video_factory, tmp_path):
    from vidseg.datasets import discover_videos
    from vidseg.runners.ray import RayLabeler

    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        video_factory(name, num_frames=9, height=48, width=80).rename(folder / name)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    events = []
    summary = RayLabeler(_config(tiny_model_dir, format="palette"), retries=2).run(
        discover_videos(folder), tmp_path / "pred", classes=["person"],
        on_event=lambda e: events.append((e.kind, e.video.name)))
    assert sorted(o.name for o in summary.with_status("done")) == ["a", "b"]
    failed = summary.with_status("failed")
    assert [o.name for o in failed] == ["broken"] and failed[0].attempts == 3
    assert "broken.mp4" in failed[0].reason and "\n" not in failed[0].reason
    assert events.count(("retry", "broken")) == 2
    assert not (tmp_path / "pred" / "broken").exists()
    log = json.loads((tmp_path / "pred" / "label_log.json").read_text())
    assert log["counts"] == {"done": 2, "skipped": 0, "failed": 1, "interrupted": 0, "retried": 1}
    assert any(f"failed broken: {failed[0].reason}" == line for line in summary.lines())


def test_ray_missing_is_one_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    root = tmp_path / "vspw"
    make_vspw_tree(root, {"1_aaa": 4})
    result = run_cli("label", root, "--out", tmp_path / "pred", "--classes-from-gt", "--model", tiny_model_dir,
                     "--ray")
    assert_one_line_error(result, 2, "vidseg[ray]")
    assert not (tmp_path / "pred").exists()
