#!/usr/bin/env python
"""Peak memory of ``vidseg predict`` on a short and a long video with the same settings: memory must not grow
with the length.

The long clip is generated (a disc that moves across a textured background, 1080p by default); the short one is
its first seconds, cut by copying packets, so both decode to identical frames there. ``vidseg predict`` runs on
each in its own process (the same command a user types); the peak resident memory of each process comes from the
kernel (``wait4``). Then the masks of the short clip's frames are compared with the long run's masks of the same
frames.

Why those masks may differ a little: a frame's map blends every model window that contains it, and near the short
clip's end the long clip has one more window there; and the maps are calibrated over the whole video. The report
gives the frames that are identical and the pixel agreement over all of them.

Example (the figures in docs/benchmarks.md)::

    python tools/length_bench.py --short 10 --long 600 --json out/length.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The settings of the measurement: the model pass and the label export, without the video writers.
DEFAULT_ARGS = ("--classes", "ball", "--no-crf", "--no-overlay", "--no-export-heatmaps", "--quiet")


def write_clip(path: Path, seconds: float, size: tuple[int, int], fps: int) -> Path:
    """H.264 clip: a red disc moving over a fixed texture, 2 s keyframe interval."""
    import av

    height, width = size
    rng = np.random.default_rng(0)
    background = (rng.integers(40, 90, (height // 8, width // 8, 3), dtype=np.uint8)
                  .repeat(8, axis=0).repeat(8, axis=1))
    yy, xx = np.mgrid[0:height, 0:width]
    radius = height // 7
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28",
                                                                    "g": str(2 * fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            t = i / fps
            cx = width / 2 + (width / 2 - radius) * np.sin(2 * np.pi * t / 7.3)
            cy = height / 2 + (height / 2 - radius) * np.sin(2 * np.pi * t / 4.1)
            frame = background.copy()
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] = (220, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def cut_clip(source: Path, path: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``source`` by copying its packets (no re-encoding: frames decode identically)."""
    import av

    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        limit = seconds / float(stream_in.time_base)
        for packet in src.demux(stream_in):
            if packet.dts is None or packet.pts is None or packet.pts >= limit:
                continue
            packet.stream = stream_out
            dst.mux(packet)
    return path


def run_predict(video: Path, out: Path, model: str, extra: list[str]) -> dict:
    """``vidseg predict`` in a child process: its wall time and the peak resident memory the kernel recorded."""
    command = [sys.executable, "-c", "from vidseg.cli.main import main; main()", "predict", str(video), "--model", model, "--out", str(out),
               *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    stderr = child.stderr.read()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vidseg predict failed on {video.name}:\n{stderr}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def compare_masks(short: Path, long: Path) -> dict:
    """The short run's masks against the long run's masks of the same frames."""
    from PIL import Image

    names = sorted(p.name for p in (short / "masks").glob("*.png"))
    same_frames, equal_pixels, pixels, first_different = 0, 0, 0, None
    for name in names:
        a = np.asarray(Image.open(short / "masks" / name))
        b = np.asarray(Image.open(long / "masks" / name))
        equal = int((a == b).sum())
        same_frames += equal == a.size
        equal_pixels, pixels = equal_pixels + equal, pixels + a.size
        if equal != a.size and first_different is None:
            first_different = name
    return {"frames": len(names), "identical_frames": same_frames, "pixel_agreement": equal_pixels / max(pixels, 1),
            "first_different_frame": first_different}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--short", type=float, default=10.0, help="seconds of the short clip (default 10)")
    parser.add_argument("--long", type=float, default=600.0, help="seconds of the long clip (default 600)")
    parser.add_argument("--size", default="1080x1920", help="HxW (default 1080x1920)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--model", help="model folder (default: a new tiny model)")
    parser.add_argument("--max-ratio", type=float, default=1.25, help="allowed long/short peak ratio (default 1.25)")
    parser.add_argument("--workdir", type=Path, help="keep clips and outputs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("predict_args", nargs="*", help=f"vidseg predict options after -- (default: "
                                                        f"{' '.join(DEFAULT_ARGS)})")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    extra = args.predict_args or list(DEFAULT_ARGS)
    with tempfile.TemporaryDirectory(prefix="vidseg-length-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = args.model
        if model is None:
            from vidseg.models.tiny import make_tiny_model

            model = str(make_tiny_model(work / "tiny"))
        started = time.perf_counter()
        long_clip = write_clip(work / "long.mp4", args.long, (height, width), args.fps)
        short_clip = cut_clip(long_clip, work / "short.mp4", args.short)
        print(f"clips written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        runs = {}
        for name, clip in (("short", short_clip), ("long", long_clip)):
            runs[name] = {"seconds_of_video": args.short if name == "short" else args.long,
                          **run_predict(clip, work / f"out-{name}", model, extra)}
            print(f"{name}: {runs[name]}", file=sys.stderr)
        masks = compare_masks(work / "out-short" / "short", work / "out-long" / "long")
    ratio = runs["long"]["peak_rss_mb"] / runs["short"]["peak_rss_mb"]
    report = {"size": [height, width], "fps": args.fps, "predict_args": extra, "runs": runs,
              "peak_ratio": round(ratio, 3), "max_ratio": args.max_ratio, "masks": masks}
    print(f"| video | frames | wall s | peak RSS MB |\n|---|---|---|---|")
    for name, run in runs.items():
        print(f"| {run['seconds_of_video']:g} s {width}x{height} | {round(run['seconds_of_video'] * args.fps)} | "
              f"{run['seconds']} | {run['peak_rss_mb']} |")
    print(f"peak ratio long/short: {ratio:.3f} (allowed {args.max_ratio})")
    print(f"masks of the short clip's {masks['frames']} frames: {masks['identical_frames']} identical in both runs, "
          f"pixel agreement {masks['pixel_agreement']:.6f}, first different frame: {masks['first_different_frame']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
