"""How reliably SIGTERM stops ``vidseg predict`` during refinement: time to exit, exit code, processes left over,
temporary folder left over, over many repetitions at different points of the refinement phase.

    python tools/stop_bench.py                          # 20 stops, 240 frames at 1280 x 720
    python tools/stop_bench.py --reps 8 --frames 96     # cheaper
    PYTHONPATH=/path/to/other/checkout python tools/stop_bench.py   # measure another version of vidseg

What it does, as a new user would: ``vidseg make-tiny-model`` and a generated clip (a square sliding over noise)
in a temporary folder; then, per repetition, ``vidseg predict`` (progress display on, unless
``--predict-options=-q``) in a new session, and SIGTERM to its main process once the export has written a share of
the masks spread evenly over the repetitions, plus a random 0-0.5 s: the stops fall all over refinement, whatever
the machine's load. A run counts as hung when the main process has not exited ``--grace`` seconds after the
signal; a process of its session still running then is left over (otherwise the time until the last one ended is
reported). Whatever survives is killed with SIGKILL, so repetitions do not pile up. ``--diagnose`` makes every
Python process of the run dump its threads' stacks on SIGUSR1 (``faulthandler``), and dumps a hung run before
killing it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

CLIP = "clip"


def write_clip(path: Path, num_frames: int, width: int, height: int, fps: float = 24.0) -> None:
    """A bright square sliding over a fixed noisy background, encoded frame by frame (never all in memory)."""
    import av

    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    side = max(4, min(height, width) // 3)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(num_frames):
            frame = background.copy()
            x = int((width - side) * t / max(num_frames - 1, 1))
            y = (height - side) // 2
            frame[y:y + side, x:x + side] = (230, 60, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def session_processes(sid: int) -> list[tuple[int, str, str]]:
    """``(pid, state, command)`` of every running process of session ``sid`` (zombies do not run)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text.rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append((int(stat.parent.name), fields[0], command[:120] or text.split("(", 1)[1].split(")")[0]))
    return found


def temporaries(out: Path) -> list[Path]:
    return sorted(out.glob(f".{CLIP}.tmp*")) if out.exists() else []


class Run:
    """One ``vidseg predict`` of the clip in its own session, stderr to a file."""

    def __init__(self, work: Path, name: str, workers: int | None, options: list[str], env: dict[str, str]):
        self.out = work / name
        self.stderr_path = work / f"{name}.stderr"
        command = [shutil.which("vidseg") or "vidseg", "predict", str(work / f"{CLIP}.mp4"), "--classes", "person",
                   "dog", "--model", str(work / "model"), "--out", str(self.out)]
        if workers is not None:
            command += ["--workers", str(workers)]
        command += options  # without -q, as a new user runs it: the progress display is stopped too
        # cwd: the fork server imports its preload modules with the current folder first on its path (it ignores
        # the parent's sys.path), so a run started inside a checkout would refine with that checkout's code.
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                            start_new_session=True, cwd=work)
        self.started = time.monotonic()

    def wait_for_refinement(self, timeout: float = 600.0) -> float:
        """Seconds from the start until the export's temporary folder appears (refinement starts right after)."""
        deadline = time.monotonic() + timeout
        while not temporaries(self.out):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the run ended (or stalled) before refining: {self.stderr_path.read_text()}")
            time.sleep(0.01)
        return time.monotonic() - self.started

    def wait_for_masks(self, count: int, timeout: float = 600.0) -> int:
        """Wait until the export has written ``count`` masks (or finished); returns how many it had written."""
        deadline = time.monotonic() + timeout
        while True:
            written = sum(len(list((tmp / "masks").glob("*.png"))) for tmp in temporaries(self.out))
            if written >= count or self.exported() or self.process.poll() is not None:
                return written
            if time.monotonic() > deadline:
                raise RuntimeError(f"the run stalled while refining: {self.stderr_path.read_text()}")
            time.sleep(0.02)

    def exported(self) -> bool:
        return (self.out / CLIP).is_dir()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_session(self) -> None:
        for pid, _, _ in session_processes(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


def diagnose_env(work: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with a sitecustomize that registers a faulthandler stack dump on SIGUSR1 in every Python process."""
    site = work / "diagnose"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n")
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--workers", type=int, default=None, help="--workers of predict (default: its default)")
    parser.add_argument("--predict-options", default="",
                        help="more options of predict, as one string: --predict-options='--no-crf' (shorter tasks)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds a stopped run may take to end")
    parser.add_argument("--diagnose", action="store_true", help="dump the stacks of a hung run (module docstring)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (stderr of every run)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    work = Path(tempfile.mkdtemp(prefix="vidseg-stop-bench-"))
    env = dict(os.environ)
    if args.diagnose:
        env = diagnose_env(work, env)
    rows = []
    try:
        subprocess.run([shutil.which("vidseg") or "vidseg", "make-tiny-model", str(work / "model")], check=True,
                       capture_output=True, env=env, cwd=work)
        write_clip(work / f"{CLIP}.mp4", args.frames, width, height)

        options = args.predict_options.split()
        print(f"clip {args.frames} frames {width}x{height} {args.predict_options}; vidseg from "
              f"{env.get('PYTHONPATH') or 'the installed package'}", flush=True)
        jitter = np.random.default_rng(0)
        for rep in range(args.reps):
            # Spread over the frames, then a moment more: stops land between and inside chunks, at every stage.
            target = int((rep + 0.5) / args.reps * args.frames)
            run = Run(work, f"run{rep:02d}", args.workers, options, env)
            started = run.started + run.wait_for_refinement()
            masks = run.wait_for_masks(target)
            time.sleep(jitter.uniform(0.0, 0.5))
            into = time.monotonic() - started
            if run.process.poll() is not None or run.exported():  # too late: the signal would stop no refinement
                run.process.wait()
                rows.append({"rep": rep, "masks": masks, "finished_before_signal": True,
                             "code": run.process.returncode})
                print(f"{rep:3d}  {masks:4d} masks  finished before the signal", flush=True)
                continue
            os.kill(run.process.pid, signal.SIGTERM)
            signalled = time.monotonic()
            code = exit_s = gone_s = None
            while time.monotonic() < signalled + args.grace:
                if code is None and (code := run.process.poll()) is not None:
                    exit_s = time.monotonic() - signalled
                if code is not None and not session_processes(run.process.pid):
                    gone_s = time.monotonic() - signalled
                    break
                time.sleep(0.05)
            left = [] if gone_s is not None else session_processes(run.process.pid)
            if left and args.diagnose:
                for pid, _, _ in left:
                    os.kill(pid, signal.SIGUSR1)
                time.sleep(2)
            if left or code is None:
                run.kill_session()
            row = {"rep": rep, "masks": masks, "into_refinement_s": round(into, 2),
                   "exit_s": None if exit_s is None else round(exit_s, 2),
                   "all_gone_s": None if gone_s is None else round(gone_s, 2), "code": code, "hung": code is None,
                   "left_over": [f"{p} {s} {c}" for p, s, c in left],
                   "temporary_left": [p.name for p in temporaries(run.out)],
                   "stderr": run.stderr_path.read_text()[-4000:]}
            rows.append(row)
            status = "HUNG" if code is None else f"exit {code} after {exit_s:5.2f} s"
            gone = f"all processes gone after {gone_s:5.2f} s" if gone_s is not None else f"{len(left)} left over"
            print(f"{rep:3d}  {masks:4d} masks, {into:6.2f} s into refinement  {status}  {gone}"
                  f"{'  temporary folder left' if row['temporary_left'] else ''}", flush=True)
            for line in row["left_over"]:
                print(f"       {line}")
            if code is None and args.diagnose:
                print(row["stderr"])
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    stopped = [r for r in rows if not r.get("finished_before_signal")]
    hung = [r for r in stopped if r["hung"]]
    exits = [r["exit_s"] for r in stopped if r["exit_s"] is not None]
    print(f"\nstopped {len(stopped)} runs ({len(rows) - len(stopped)} finished before the signal)")
    print(f"hung (no exit within {args.grace:g} s): {len(hung)} of {len(stopped)}")
    print(f"exit time: max {max(exits, default=float('nan')):.2f} s, median "
          f"{float(np.median(exits)) if exits else float('nan'):.2f} s")
    gone = [r["all_gone_s"] for r in stopped if r["all_gone_s"] is not None]
    print(f"every process of the run gone: max {max(gone, default=float('nan')):.2f} s after the signal")
    print(f"exit code other than 143: {sum(1 for r in stopped if r['code'] not in (143, None))}")
    print(f"runs with processes left {args.grace:g} s after the signal: {sum(1 for r in stopped if r['left_over'])}")
    print(f"runs with the temporary folder left: {sum(1 for r in stopped if r['temporary_left'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    ok = stopped and not hung and all(r["code"] == 143 and not r["left_over"] and not r["temporary_left"]
                                      for r in stopped)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
