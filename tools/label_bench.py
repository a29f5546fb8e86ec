"""Videos per hour of ``vidseg label``: the single-process run beside the Ray runner with 1..N actors, on the same
generated dataset in one invocation (ratios, not single absolute times on a noisy machine).

    python tools/label_bench.py --model tiny-model/ --videos 12              # plain, then Ray with 1 actor
    python tools/label_bench.py --model tiny-model/ --actors 1 2 4 --cpus 8  # on a machine with 8 cores

Every run labels the same toy-world clips (``vidseg.toyworld``, 24 frames at 192 x 128, one class each) into its own
folder. Two rates are printed: over the whole run (model loading and Ray start-up included) and steady state (from
the first finished video to the last). The outputs of every run are compared file for file with the plain run's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidseg.config import load_config  # noqa: E402
from vidseg.datasets import discover_videos  # noqa: E402
from vidseg.pipeline import VideoSegmenter  # noqa: E402
from vidseg.runners import label_videos  # noqa: E402
from vidseg.toyworld import render_clip, write_toy_clip  # noqa: E402


def make_dataset(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for seed in range(count):
        clip = render_clip(seed, num_frames=24, height=128, width=192, num_objects=1)
        write_toy_clip(folder / f"toy{seed:03d}.mp4", clip)


def timed_run(run, out: Path) -> dict:
    finished: list[float] = []
    start = time.perf_counter()
    summary = run(out, lambda event: finished.append(time.perf_counter()) if event.kind == "done" else None)
    total = time.perf_counter() - start
    done = len(summary.with_status("done"))
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) * 3600 if len(finished) > 1 else float("nan")
    return {"seconds": round(total, 2), "videos": done, "videos_per_hour": round(done / total * 3600, 1),
            "steady_videos_per_hour": round(steady, 1)}


def same_masks(a: Path, b: Path) -> bool:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.png"))
    return names == sorted(str(p.relative_to(b)) for p in b.rglob("*.png")) and all(
        np.array_equal(np.asarray(Image.open(a / n)), np.asarray(Image.open(b / n))) for n in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder (e.g. from vidseg make-tiny-model)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--actors", type=int, nargs="+", default=[1], help="Ray runs with these actor counts")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    parser.add_argument("--gpus-per-actor", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import ray

    from vidseg.runners.ray import RayLabeler

    config = load_config(model=args.model)
    config.export.format = "palette"  # toy class names are not VSPW classes
    config.validate()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="vidseg-label-bench-") as tmp:
        data = Path(tmp) / "videos"
        make_dataset(data, args.videos)
        videos = discover_videos(data)
        classes = ["circle"]

        def plain(out, on_event):
            segmenter = VideoSegmenter.from_pretrained(config=config)
            return label_videos(segmenter, videos, out, classes=classes, on_event=on_event)

        rows["single process"] = timed_run(plain, Path(tmp) / "plain")
        for count in args.actors:
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                labeler = RayLabeler(config, num_actors=count, gpus_per_actor=args.gpus_per_actor)
                out = Path(tmp) / f"ray{count}"
                rows[f"ray, {count} actor{'s' if count > 1 else ''}"] = row = timed_run(
                    lambda o, e: labeler.run(videos, o, classes=classes, on_event=e), out)
                row["same_masks_as_plain"] = same_masks(Path(tmp) / "plain", out)
            finally:
                ray.shutdown()

    base = rows["single process"]
    print(f"{args.videos} toy clips (24 frames, 192 x 128), model {args.model}")
    print(f"{'run':<22}{'seconds':>9}{'videos/h':>10}{'steady/h':>10}{'x plain':>9}  same masks")
    for name, row in rows.items():
        ratio = row["steady_videos_per_hour"] / base["steady_videos_per_hour"]
        print(f"{name:<22}{row['seconds']:>9.1f}{row['videos_per_hour']:>10.0f}{row['steady_videos_per_hour']:>10.0f}"
              f"{ratio:>9.2f}  {row.get('same_masks_as_plain', '-')}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
