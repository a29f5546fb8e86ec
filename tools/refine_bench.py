"""Benchmark of the saliency -> labels path on real frames with real masks (the judo frames in ../shared/data).

Coarse maps are made from the ground-truth person masks the way the model sees a video: the mask is
area-pooled to the 30 x 45 latent grid of a 480 x 720 model input (1/16 of the model resolution, whatever the
frame size), blurred a little (attention maps are smooth), and perturbed with Gaussian noise; the
probabilities [background, person] are then upsampled back to the frame size (854 x 480) and refined.

    python tools/refine_bench.py                 # table: upsampler x CRF, mean IoU and s/frame; speed line
    python tools/refine_bench.py --sweep         # guided-filter and CRF settings (how the defaults were chosen)
    python tools/refine_bench.py --calibration   # saliency calibrations on GramCol-like maps, C = 1 .. 10

AnyUp runs with random weights (no checkpoint can be downloaded here): its row measures speed only.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from vidseg.config import CrfConfig, ProbsConfig, UpsampleConfig
from vidseg.probs import saliency_to_probs
from vidseg.refine import to_labels
from vidseg.upsample import AnyUp, AnyUpUpsampler

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "judo"
GRID = (30, 45)  # latent grid of a 480 x 720 CogVideoX input
NOISE_SEEDS = (0, 1, 2)


def load_judo(data_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frame uint8 [H, W, 3], person mask bool [H, W]) for every frame that has a mask."""
    samples = []
    for mask_path in sorted((data_dir / "masks").glob("*.png")):
        mask = np.array(Image.open(mask_path)) > 0
        frame = np.array(Image.open(data_dir / "frames" / f"{mask_path.stem}.jpg").convert("RGB"))
        frame = np.ascontiguousarray(frame[: mask.shape[0], : mask.shape[1]])  # 00005's mask is one column short
        samples.append((mask_path.stem, frame, mask))
    return samples


def coarse_probs(mask: np.ndarray, seed: int, *, blur: float = 0.6, noise: float = 0.1) -> np.ndarray:
    """float32 [2, 30, 45]: [background, person] from an area-pooled, blurred, noisy mask."""
    fraction = cv2.resize(mask.astype(np.float32), GRID[::-1], interpolation=cv2.INTER_AREA)
    fraction = gaussian_filter(fraction, blur)
    rng = np.random.default_rng(seed)
    person = np.clip(fraction + rng.normal(0, noise, fraction.shape), 0, 1).astype(np.float32)
    return np.stack([1 - person, person])


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / max((pred | truth).sum(), 1))


def evaluate(samples, upsampler, crf, seeds=NOISE_SEEDS) -> tuple[float, float, list[float]]:
    """Mean person IoU, seconds per frame (one process) and the per-(frame, seed) IoUs."""
    ious, seconds = [], 0.0
    for (_, frame, mask), seed in itertools.product(samples, seeds):
        probs = coarse_probs(mask, seed)[None]
        start = time.perf_counter()
        labels = to_labels(frame[None], probs, upsampler=upsampler, crf=crf, workers=1)[0]
        seconds += time.perf_counter() - start
        ious.append(iou(labels == 1, mask))
    return float(np.mean(ious)), seconds / len(ious), ious


def random_anyup() -> AnyUpUpsampler:
    torch.manual_seed(0)
    return AnyUpUpsampler(AnyUp(), device="cpu")


def main_table(samples) -> None:
    crf_on = CrfConfig(enabled=True)
    crf_off = CrfConfig(enabled=False)
    rows = []
    baseline = None
    for name, upsampler in [("bilinear", "bilinear"), ("guided", UpsampleConfig()), ("anyup (random weights)", None)]:
        for crf_name, crf in [("no", crf_off), ("yes", crf_on)]:
            if upsampler is None:  # AnyUp: time two frames; IoU of random weights means nothing
                _, seconds, _ = evaluate(samples[:2], random_anyup(), crf, seeds=(0,))
                rows.append((name, crf_name, "n/a", seconds))
                continue
            mean_iou, seconds, ious = evaluate(samples, upsampler, crf)
            baseline = baseline or ious
            worst = min(b - a for a, b in zip(baseline, ious))
            rows.append((name, crf_name, f"{mean_iou:.4f} (worst frame {worst:+.3f})", seconds))
    print("\n| upsampler | CRF | person IoU (vs bilinear, worst frame) | s/frame |")
    print("|---|---|---|---|")
    for name, crf_name, score, seconds in rows:
        print(f"| {name} | {crf_name} | {score} | {seconds:.3f} |")
    print(f"({len(samples)} frames x {len(NOISE_SEEDS)} noise seeds, {samples[0][1].shape[1]}x{samples[0][1].shape[0]};"
          f" timings single process, {torch.get_num_threads()} torch threads)")


def speed_line(samples, num_frames: int, num_classes: int, workers: int) -> None:
    """refine + palette-PNG export of ``num_frames`` frames at 480 x 720: ``num_classes`` classes all present,
    then a 124-class list of which the same number are present (the others never come close)."""
    from vidseg.export import make_writers

    rng = np.random.default_rng(0)
    frames = np.stack([cv2.resize(samples[i % len(samples)][1], (720, 480)) for i in range(num_frames)])
    present = gaussian_filter(rng.normal(size=(num_frames, num_classes + 1) + GRID), (0, 0, 2, 2)) * 8
    absent = rng.normal(-6, 0.5, size=(num_frames, 124 - num_classes) + GRID)
    cases = [
        (f"{num_classes} classes + background", present, UpsampleConfig()),
        (f"124 classes ({num_classes} present) + background", np.concatenate([present, absent], 1), UpsampleConfig()),
        (f"{num_classes} classes + background, bilinear", present, "bilinear"),
    ]
    for label, logits, upsampler in cases:
        probs = torch.from_numpy(logits).float().softmax(dim=1)
        classes = [f"class {k}" for k in range(1, probs.shape[1])]
        with tempfile.TemporaryDirectory() as out_dir:
            start = time.perf_counter()
            writers = make_writers("palette", out_dir, classes)
            for chunk in range(0, num_frames, 16):  # the pipeline's chunks
                labels = to_labels(frames[chunk:chunk + 16], probs[chunk:chunk + 16], upsampler=upsampler,
                                   crf=CrfConfig(enabled=True), workers=workers)
                for j, frame_labels in enumerate(labels):
                    for writer in writers:
                        writer.add(chunk + j, f"{chunk + j:05d}", frame_labels, frames[chunk + j])
            for writer in writers:
                writer.close()
            seconds = time.perf_counter() - start
        print(f"speed: refine (CRF) + palette export, {num_frames} frames 480x720, {label}, "
              f"workers={workers or 'all cores'}: {seconds:.1f} s")


def sweep(samples) -> None:
    """Guided-filter settings without CRF, then CRF settings on top of the default guided filter."""
    bilinear = evaluate(samples, "bilinear", False)
    print(f"\nbilinear, no CRF: {bilinear[0]:.4f}")
    print("\n| guided radius (cells) | eps | IoU | worst frame vs bilinear |")
    print("|---|---|---|---|")
    for radius, eps in itertools.product((0.25, 0.5, 1.0, 1.5), (1e-3, 1e-2, 1e-1)):
        mean_iou, _, ious = evaluate(samples, UpsampleConfig(guided_radius=radius, guided_eps=eps), False)
        print(f"| {radius} | {eps} | {mean_iou:.4f} | {min(b - a for a, b in zip(bilinear[2], ious)):+.3f} |")
    print("\n| bilateral sxy | srgb | compat | gaussian compat | iterations | IoU | worst vs bilinear | s/frame |")
    print("|---|---|---|---|---|---|---|---|")
    grid = itertools.product((20, 40, 60, 80), (5, 10, 13), (3, 5, 10), (3,), (5,))
    extra = [(80, 13, 10, 3, 10), (40, 10, 5, 1, 5), (40, 10, 5, 3, 10)]
    for sxy, srgb, compat, gcompat, iterations in [*grid, *extra]:
        crf = CrfConfig(enabled=True, bilateral_sxy=sxy, bilateral_srgb=srgb, bilateral_compat=compat,
                        gaussian_compat=gcompat, iterations=iterations)
        mean_iou, seconds, ious = evaluate(samples, UpsampleConfig(), crf)
        worst = min(b - a for a, b in zip(bilinear[2], ious))
        print(f"| {sxy} | {srgb} | {compat} | {gcompat} | {iterations} | {mean_iou:.4f} | {worst:+.3f} "
              f"| {seconds:.2f} |")


def gramcol_saliency(mask: np.ndarray, frame: np.ndarray, num_classes: int, seed: int,
                     num_maps: int = 85, slots: int = 226) -> np.ndarray:
    """float32 [1, C, 30, 45] GramCol-like z-scored maps (method.md 7.2) for a video whose class 1 is the person
    and classes 2..C are absent.

    Token features per cell: the cell's mean colour, its person fraction and noise. For each of ``num_maps``
    (heads x layers) maps, each concept's surrogate token is a random person cell (class 1) or a random cell
    (absent classes and the null concept), its map the dot product of that token with every cell, z-scored
    over ``slots`` slots of which ``slots - C`` are copies of the null map; the maps are then averaged.
    """
    rng = np.random.default_rng(seed)
    colour = cv2.resize(frame.astype(np.float32) / 255, GRID[::-1], interpolation=cv2.INTER_AREA).reshape(-1, 3)
    colour = (colour - colour.mean(0)) / (colour.std(0) + 1e-6)
    person = cv2.resize(mask.astype(np.float32), GRID[::-1], interpolation=cv2.INTER_AREA).reshape(-1)
    person_cells = np.flatnonzero(person > 0.5)
    total = np.zeros((num_classes,) + GRID)
    for _ in range(num_maps):
        tokens = np.concatenate([colour, 3 * person[:, None], rng.normal(0, 1, (person.size, 8))], axis=1)
        surrogates = [rng.choice(person_cells)] + list(rng.integers(0, person.size, num_classes))
        grams = tokens[surrogates] @ tokens.T  # [1 + C, cells]: person, absent classes..., null last
        real, null = grams[:num_classes], grams[num_classes]
        num_null = slots - num_classes
        mean = (real.sum(0) + num_null * null) / slots
        var = (((real - mean) ** 2).sum(0) + num_null * (null - mean) ** 2) / (slots - 1)
        total += ((real - mean) / (np.sqrt(var) + 1e-6)).reshape((num_classes,) + GRID)
    return (total / num_maps).astype(np.float32)[None]


def calibration_study(samples, bilinear_table: bool = True) -> None:
    """Which calibration lets one background setting work for 1, 2, 5 and 10 classes (one present)."""
    class_counts = (1, 2, 5, 10)
    maps = {(name, c, seed): gramcol_saliency(mask, frame, c, seed)
            for (name, frame, mask), c, seed in itertools.product(samples, class_counts, (0, 1))}

    def scores(calibration: str, background: float, temperature: float, upsampler, crf) -> list[float]:
        out = []
        for c in class_counts:
            per = []
            for (name, frame, mask), seed in itertools.product(samples, (0, 1)):
                probs = saliency_to_probs(torch.from_numpy(maps[(name, c, seed)]), temperature=temperature,
                                          background=background, calibration=calibration)
                labels = to_labels(frame[None], probs, upsampler=upsampler, crf=crf, workers=1)[0]
                # Two-class mIoU: any absent-class label is an error for both classes.
                per.append((iou(labels == 1, mask) + iou(labels == 0, ~mask)) / 2)
            out.append(float(np.mean(per)))
        return out

    header = " | ".join(f"mIoU C={c}" for c in class_counts)
    # Bilinear without CRF: the argmax does not depend on the temperature, so only the background is searched.
    backgrounds = {
        "clip": (0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
        "class": (0.5, 1.0, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0),
        "otsu": (0.0, 1.0, 1.5, 2.0, 3.0),
        "none": (2.0, 3.0, 4.0, 5.0, 6.0),
    }
    print(f"\nbilinear, no CRF\n| calibration | background | {header} | worst |")
    print("|---|---|" + "---|" * (len(class_counts) + 1))
    for calibration, options in backgrounds.items() if bilinear_table else ():
        for background in options:
            row = scores(calibration, background, 1.0, "bilinear", False)
            print(f"| {calibration} | {background} | " + " | ".join(f"{s:.3f}" for s in row) + f" | {min(row):.3f} |")
    defaults = ProbsConfig()
    print(f"\nguided + CRF (defaults), calibration {defaults.calibration}, background {defaults.background}\n"
          f"| temperature | {header} | worst |")
    print("|---|" + "---|" * (len(class_counts) + 1))
    for temperature in (0.1, 0.25, 0.5, 1.0, 2.0):
        row = scores(defaults.calibration, defaults.background, temperature, UpsampleConfig(), CrfConfig(enabled=True))
        print(f"| {temperature} | " + " | ".join(f"{s:.3f}" for s in row) + f" | {min(row):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="judo folder with frames/ and masks/")
    parser.add_argument("--sweep", action="store_true", help="guided-filter and CRF settings sweep")
    parser.add_argument("--calibration", action="store_true", help="saliency calibration study")
    parser.add_argument("--speed-frames", type=int, default=49)
    parser.add_argument("--speed-classes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="worker processes for the speed line (0: all cores)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = load_judo(args.data)
    if not samples:
        raise SystemExit(f"no masks under {args.data}/masks")
    print(f"defaults: {dataclasses.asdict(UpsampleConfig())}\n          {dataclasses.asdict(CrfConfig())}")
    if args.sweep:
        sweep(samples)
    if args.calibration:
        calibration_study(samples)
    if not (args.sweep or args.calibration):
        main_table(samples)
        speed_line(samples, args.speed_frames, args.speed_classes, args.workers)


if __name__ == "__main__":
    main()
