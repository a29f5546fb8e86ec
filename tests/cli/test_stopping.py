"""Stopped politely, left clean: SIGTERM / SIGHUP / SIGKILL mid-export, full disks, and stale temporary folders.

The signal tests run the real ``vidseg`` console script in its own process group and synchronise on files
appearing (a mask inside the temporary output folder, a finished video's marker), never on sleeps.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import moving_square_frames, write_video
from tests.conftest import run_cli
from vidseg.files import atomic_dir, remove_stale_temporaries

VIDSEG = shutil.which("vidseg")
needs_script = pytest.mark.skipif(VIDSEG is None or sys.platform != "linux",
                                  reason="needs the installed vidseg console script on Linux")


def _wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _first_line(process: subprocess.Popen, timeout: float = 120.0) -> str:
    """The child's first stdout line, or an AssertionError after ``timeout`` s: a child stuck before it speaks must
    fail the test, not hang the run."""
    import select

    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"the child wrote nothing in {timeout:.0f} s")
    line = process.stdout.readline()
    if not line:  # it ended: what it said on stderr is why
        raise AssertionError(f"the child ended without a line: {process.stderr.read()}")
    return line.strip()


def _live_processes(group: int) -> list[str]:
    """Processes of process group ``group`` that are still running (zombies awaiting a reaper do not run)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgid = fields[0], int(fields[2])
        if pgid == group and state not in ("Z", "X"):
            alive.append(stat.parent.name)
    return alive


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    # 16 s at 24 fps, 640 x 360: refine + export takes long enough to be stopped in the middle.
    return write_video(tmp_path_factory.mktemp("video") / "walk.mp4", moving_square_frames(384, 360, 640), 24.0)


def _start_predict(video: Path, model: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [VIDSEG, "predict", str(video), "--classes", "person", "dog", "--model", str(model), "--out", str(out),
         "--workers", "2", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _masks_in_temporary(out: Path) -> bool:
    return any(tmp.is_dir() and any((tmp / "masks").glob("*.png")) for tmp in out.glob(".walk.tmp*"))


@needs_script
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_mid_export_leaves_nothing(signum, long_video, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    process = _start_predict(long_video, tiny_model_dir, out)
    _wait_for(lambda: _masks_in_temporary(out) or process.poll() is not None, what="masks being written")
    assert process.poll() is None, process.communicate()
    os.kill(process.pid, signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and f"stopped by {signal.Signals(signum).name}" in lines[0], stderr
    assert "Traceback" not in stderr
    assert list(out.iterdir()) == []  # no output folder, no temporary folder
    _wait_for(lambda: not _live_processes(process.pid), timeout=15, what="the run's processes to end")


@needs_script
def test_sigkill_leaves_no_process_and_the_next_run_removes_its_folder(long_video, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    process = _start_predict(long_video, tiny_model_dir, out)
    _wait_for(lambda: _masks_in_temporary(out) or process.poll() is not None, what="masks being written")
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    # Worker processes notice their parent is gone (a watchdog in each) and end; nothing keeps burning CPU.
    _wait_for(lambda: not _live_processes(process.pid), timeout=15, what="orphaned workers to end")
    [stale] = list(out.glob(".walk.tmp*"))
    short = long_video.with_name("short.mp4")
    write_video(short, moving_square_frames(12, 72, 128), 24.0)
    result = run_cli("predict", short, "--classes", "dog", "--model", tiny_model_dir, "--out", out, "--no-overlay",
                     "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and sorted(p.name for p in out.iterdir()) == ["short"]


@needs_script
def test_label_stopped_by_sigterm_keeps_finished_videos(tiny_model_dir, tmp_path):
    root = tmp_path / "videos"
    for i in range(3):
        write_video(root / f"v{i}.mp4", moving_square_frames(96, 72, 128, seed=i), 24.0)
    out = tmp_path / "pred"
    process = subprocess.Popen(
        [VIDSEG, "label", str(root), "--classes", "person", "--format", "palette", "--model", str(tiny_model_dir),
         "--out", str(out), "--workers", "1", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    _wait_for(lambda: (out / "v0" / ".vidseg-complete.json").is_file() or process.poll() is not None,
              what="the first video to finish")
    assert process.poll() is None, process.communicate()
    os.kill(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stdout + stderr
    assert (out / "v0" / ".vidseg-complete.json").is_file()
    assert not (out / ".vidseg-tmp").exists() or not any((out / ".vidseg-tmp").iterdir())
    _wait_for(lambda: not _live_processes(process.pid), timeout=15, what="the run's processes to end")
    rerun = run_cli("label", root, "--classes", "person", "--format", "palette", "--model", tiny_model_dir, "--out",
                    out, "--workers", "1", "-q")
    assert rerun.exit_code == 0, rerun.output
    assert "skipped v0" in rerun.output


# Refinement through the CLI's stop path, with large frames and cheap jobs, while another thread runs Python code
# (as the model thread does on the next video of a run): the workers spend much of their time sending labels back,
# the moment at which a stop that ended them mid-message hung the interpreter's exit (4 of 10 before the fix).
REFINING_CHILD = textwrap.dedent("""
    import sys
    import threading
    import numpy as np
    import typer
    from vidseg.cli._app import handle_errors
    from vidseg.refine import to_labels

    def busy():
        while True:
            pass

    @handle_errors
    def refine_until_stopped():
        threading.Thread(target=busy, daemon=True).start()
        frames = np.zeros((8, 1440, 2560, 3), np.uint8)
        probs = np.random.default_rng(0).random((8, 3, 9, 16), dtype=np.float32)
        probs /= probs.sum(axis=1, keepdims=True)
        to_labels(frames, probs, upsampler="bilinear", crf=False, workers=2)
        print("refining", flush=True)
        while True:
            to_labels(frames, probs, upsampler="bilinear", crf=False, workers=2)

    if __name__ == "__main__":
        try:
            refine_until_stopped()
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigterm_mid_refinement_ends_every_process_each_time(tmp_path):
    script = tmp_path / "refine.py"
    script.write_text(REFINING_CHILD)
    for delay in (0.05, 0.3, 0.55, 0.8, 1.05):
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True, cwd=tmp_path)
        try:
            assert _first_line(process) == "refining"
            time.sleep(delay)
            os.kill(process.pid, signal.SIGTERM)
            try:
                assert process.wait(timeout=15) == 143, process.stderr.read()
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running 15 s after SIGTERM ({delay} s into refinement)") from None
            _wait_for(lambda: not _live_processes(process.pid), timeout=15, what="the run's processes to end")
        finally:
            for pid in _live_processes(process.pid):
                os.kill(int(pid), signal.SIGKILL)
            process.wait()


SLOW_FINALIZER_CHILD = textwrap.dedent("""
    import sys
    import time
    import typer
    from vidseg.cli._app import handle_errors

    class Buffer:  # as decord's frame buffers: freed, and finalized, in the middle of the run
        def __del__(self):
            print("finalizing", flush=True)
            time.sleep(1)

    @handle_errors
    def run():
        Buffer()
        time.sleep(30)

    if __name__ == "__main__":
        try:
            run()
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
""")


def test_a_sigterm_that_lands_in_a_finalizer_still_stops_the_run(tmp_path):
    """Python drops an exception raised in a ``__del__``: the stop must be delivered again, not lost."""
    script = tmp_path / "finalizer.py"
    script.write_text(SLOW_FINALIZER_CHILD)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    try:
        assert _first_line(process) == "finalizing"
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0], stderr


def test_stopping_the_workers_ends_only_the_pools_processes():
    import multiprocessing

    import numpy as np

    from vidseg.refine import to_labels
    from vidseg.workers import stop_workers

    stop_workers()  # a pool an earlier test started
    other = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,), daemon=True)
    other.start()
    try:
        frames = np.zeros((4, 8, 8, 3), np.uint8)
        probs = np.full((4, 2, 2, 2), 0.5, np.float32)
        before = set(multiprocessing.active_children())
        to_labels(frames, probs, upsampler="bilinear", crf=False, workers=2)
        workers = set(multiprocessing.active_children()) - before
        assert len(workers) == 2
        stop_workers()
        assert not any(p.is_alive() for p in workers)
        assert other.is_alive()  # a process the pool did not start is left alone
        assert to_labels(frames, probs, upsampler="bilinear", crf=False, workers=2).shape == (4, 8, 8)
    finally:
        stop_workers()
        other.terminate()
        other.join()


def test_only_dead_runs_temporary_folders_are_removed(tmp_path):
    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / f".clip.tmp@{host}@{finished.pid}@abc"
    live = tmp_path / f".clip.tmp@{host}@{os.getpid()}@def"
    elsewhere = tmp_path / f".clip.tmp@another-host@{finished.pid}@ghi"
    user = tmp_path / "clip"
    for folder in (dead, live, elsewhere, user):
        folder.mkdir()
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and elsewhere.exists() and user.exists()
    with atomic_dir(tmp_path / "new") as tmp:
        assert f"@{host}@{os.getpid()}@" in tmp.name
        (tmp / "file").write_text("x")
    assert (tmp_path / "new" / "file").read_text() == "x"


def test_a_full_disk_gives_one_line_and_leaves_nothing(tiny_model_dir, video_factory, tmp_path, monkeypatch):
    from vidseg.export.palette import PaletteMaskWriter

    calls = {"n": 0}
    original = PaletteMaskWriter.add

    def add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PaletteMaskWriter, "add", add)
    video = video_factory("clip.mp4", num_frames=12)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_model_dir, "--out", out, "--workers", "1",
                     "-q")
    assert result.exit_code == 1
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no space left") and str(out) in lines[0]
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting a tmpfs needs root on Linux")
def test_a_real_small_tmpfs(tiny_model_dir, video_factory, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        video = video_factory("clip.mp4", num_frames=48, height=360, width=640)
        result = run_cli("predict", video, "--classes", "dog", "--model", tiny_model_dir, "--out", mount / "out",
                         "--workers", "1", "-q")
        assert result.exit_code == 1, result.output
        assert "no space left on the device holding" in result.output and "Traceback" not in result.output
        assert list((mount / "out").iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
