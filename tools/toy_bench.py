"""How vidseg's choices score on the toy world, where the truth is known: mean IoU of a model's masks through the
library pipeline (``VideoSegmenter.compute_saliency`` then ``iter_labels``, what ``vidseg predict`` runs) on held-out
toy clips, for map kind, inversion, read-out timestep, map layers, motion heads, calibration, background logit,
upsampler and CRF, plus two random-weight controls; ``--only maps`` puts every map kind the backbone gives side by side
(IMAP, GramCol and the paper's two baselines, cross-attention and ConceptAttention).

    python tools/toy_bench.py --model toy                        # the shipped model, 24 held-out clips; a table
    python tools/toy_bench.py --model toy-model/ --clips 8 --json toy_bench.json
    python tools/toy_bench.py --model toy-model-step1000/ --only defaults
    python tools/toy_bench.py --model toy-model/ --only post --first-seed 500000   # choose post-processing on the
                                                                                   # trainer's validation clips
    python tools/toy_bench.py --model toy --only maps            # IMAP, GramCol and the two baselines
    python tools/toy_bench.py --model toy --motion               # verbs: where and when, through vidseg localize
    python tools/toy_bench.py --model toy --motion --only post --first-seed 500000  # choose the decision
    python tools/toy_bench.py --model toy --vocabulary --first-seed 700000   # ask every clip for all four shapes

Clips are the toy world's seeds 0..N-1 (tools/train_toy_model.py trains on seeds from 1,000,000 on), 24 frames at 192 x 128,
written as H.264 like ``vidseg make-toy-clip``, segmented with the classes present. A clip's score is the mean IoU
over its shapes; a row's score is the mean over clips. Each row changes one setting from the model's preset.
These are toy numbers: they say what vidseg's plumbing and read-out do on a small model trained to ground its
words, and do not transfer blindly to CogVideoX.

``--motion`` scores ``vidseg localize``'s library path (``VideoSegmenter.localize_video``, then its masks) on held-out
motion clips (motion seeds FIRST..FIRST+N-1; the trainer's motion windows come from motion seeds 3,000,000 on and
its validation from 500,000 on), asked for every shape and verb of the clip: per verb the temporal IoU of the active
frames, the spatio-temporal IoU of the masks over the clip and the pointing accuracy of each truly active frame's
peak, each the mean over the clips that hold the verb; rows for the map kinds, the motion heads and the decision.

``--vocabulary`` asks every clip for all four shapes (the full-vocabulary protocol), beside asking it for the shapes
it holds: per row the mean IoU over the present shapes, the share of pixels the absent shapes took, and the presence
decision's accuracy and AUROC over (clip, shape); rows for the presence threshold and the prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidseg.config import load_config, model_folder_config  # noqa: E402
from vidseg.models.cogvideox.parts import build_tiny_pipeline  # noqa: E402
from vidseg.models.hub import load_model  # noqa: E402
from vidseg.models.tiny import TOY_SPEC, make_tiny_model, save_small_pipeline  # noqa: E402
from vidseg.pipeline import VideoSegmenter  # noqa: E402
from vidseg.evaluation.motion import score_localization  # noqa: E402
from vidseg.toyworld import (  # noqa: E402
    SHAPES, VERBS, absent_pixels, class_ious, render_clip, render_motion_clip, shape_label, write_toy_clip,
)

# (row name, settings that need the model pass again)
MODEL_ROWS = [
    ("defaults (the preset: IMAP, DDIM 10 steps to t=199)", []),
    ("inversion: renoise (official)", ["inversion.method=renoise"]),
    ("inversion: DDIM 5 steps (grid 25, t=199)", ["inversion.num_steps=25", "inversion.readout_index=20"]),
    ("inversion: DDIM 20 steps (grid 100, t=199)", ["inversion.num_steps=100", "inversion.readout_index=80"]),
    ("read-out t=399 (DDIM 20 steps)", ["inversion.readout_index=30"]),
    ("read-out t=599 (DDIM 30 steps)", ["inversion.readout_index=20"]),
    ("read-out t=799 (DDIM 40 steps)", ["inversion.readout_index=10"]),
    ("layers [1]", ["maps.layers=[1]"]),
    ("layers [2]", ["maps.layers=[2]"]),
    ("layers [3]", ["maps.layers=[3]"]),
    ("layers [4]", ["maps.layers=[4]"]),
    ("layers [0..5] (all)", ["maps.layers=[0,1,2,3,4,5]"]),
    ("motion heads top-1", ["maps.top_k_heads=1"]),
    ("motion heads top-4 (= all)", ["maps.top_k_heads=4"]),
]
POST_ROWS = [
    ("calibration: clip", ["probs.calibration=clip"]),
    ("calibration: otsu", ["probs.calibration=otsu"]),
    ("library defaults: class calibration, background 2", ["probs.calibration=class", "probs.background=2.0"]),
    ("background logit 1.0", ["probs.background=1.0"]),
    ("background logit 3.0", ["probs.background=3.0"]),
    ("upsample: bilinear", ["upsample.method=bilinear"]),
    ("CRF: off", ["crf.enabled=false"]),
    ("CRF: bilateral weight 5", ["crf.bilateral_compat=5"]),
    ("CRF: bilateral weight 20", ["crf.bilateral_compat=20"]),
    ("CRF: colour width 25", ["crf.bilateral_srgb=25"]),
    ("CRF: real-video defaults (15 / 4 / 3)", ["crf.bilateral_sxy=15", "crf.bilateral_srgb=4",
                                               "crf.bilateral_compat=3"]),
    ("bilinear, no CRF", ["upsample.method=bilinear", "crf.enabled=false"]),
]


MOTION_ROWS = [
    ("defaults (the preset: IMAP, motion heads top-2)", []),
    ("motion heads top-1", ["maps.top_k_heads=1"]),
    ("motion heads top-4 (= all)", ["maps.top_k_heads=4"]),
]
MOTION_POST_ROWS = [
    ("threshold 0.3", ["localize.threshold=0.3"]),
    ("threshold 0.7", ["localize.threshold=0.7"]),
    ("threshold 0.9", ["localize.threshold=0.9"]),
    ("fill gaps < 0.5 s", ["localize.max_gap_s=0.5"]),
    ("drop runs < 0.5 s", ["localize.min_active_s=0.5"]),
    ("peak share 0.1", ["localize.peak_share=0.1"]),
    ("background logit 1.0", ["probs.background=1.0"]),
    ("calibration: class, background 2 (real-video defaults)", ["probs.calibration=class", "probs.background=2.0"]),
    ("calibration: clip, background 2", ["probs.calibration=clip", "probs.background=2.0"]),
]


# What each map kind is, for the rows (every kind the model's backbone gives gets one, beside the preset's).
KIND_LABELS = {"imap": "IMAP (motion heads)", "gramcol": "GramCol (all heads)",
               "cross_attention": "cross-attention (baseline)", "concept_attention": "ConceptAttention (baseline)"}


def map_kind_rows(model_dir: str, run, clips, workers: int, log, *, skip: str | None = None) -> list[dict]:
    """A row per map kind the model's backbone gives (``skip``: the preset's, already a row), each with the preset's
    post-processing and again with the scale-free ``clip`` calibration: the baselines' raw values (logits, output
    products) are not on the z-scores' scale, so a preset tuned on z-scores would rank them unfairly alone. ``run``
    is ``run_model`` or ``run_motion``."""
    out = []
    for kind in load_model(model_dir).map_kinds:
        if kind == skip:
            continue
        setting, label = [f"maps.kind={kind}"], KIND_LABELS.get(kind, kind)
        out += run(model_dir, clips, [(f"map: {label}", setting)],
                   [(f"map: {label}, calibration clip", setting + ["probs.calibration=clip"])], workers, log)
    return out


def preset_map_kind(model_dir: str) -> str:
    """The map kind of the model's preset (its first row)."""
    return load_config(model_dir_config=model_folder_config(model_dir)).maps.kind


def make_clips(count: int, folder: Path, first_seed: int = 0) -> list[tuple[Path, list[str], np.ndarray]]:
    """Held-out toy clips written as videos: (path, classes present, truth labels [T, H, W])."""
    clips = []
    for seed in range(first_seed, first_seed + count):
        clip = render_clip(seed, num_frames=24, height=128, width=192)
        path, _ = write_toy_clip(folder / f"toy{seed:03d}.mp4", clip)
        clips.append((path, clip.classes, clip.labels))
    return clips


def score(segmenter: VideoSegmenter, result, truth: np.ndarray) -> dict[str, float | None]:
    labels = np.stack([lab for _, lab in segmenter.iter_labels(result)])
    return class_ious(labels, truth, result.classes)


def run_rows(model_dir: str, clips, rows, post_rows, workers: int, log, score_clip, make_row) -> list[dict]:
    """Every row for one model: each model row is a model pass per clip (``compute_saliency``, what ``vidseg
    predict`` and ``vidseg localize`` run); post rows reuse the first row's maps. ``score_clip(segmenter, result,
    clip's truth)`` scores one clip, ``make_row(name, settings, scores, seconds)`` builds the row."""
    model = load_model(model_dir)
    base_file = model_folder_config(model_dir)

    def segmenter(overrides: list[str]) -> VideoSegmenter:
        cfg = load_config(model_dir_config=base_file, overrides=overrides + [f"export.workers={workers}"])
        cfg.validate()
        return VideoSegmenter(model, cfg)

    out, first_results = [], []
    for name, overrides in rows:
        seg, results, seconds = segmenter(overrides), [], 0.0
        for path, classes, _ in clips:
            start = time.perf_counter()
            results.append(seg.compute_saliency(path, classes))
            seconds += time.perf_counter() - start
        first_results = first_results or results
        out.append(make_row(name, overrides, [score_clip(seg, r, c[2]) for r, c in zip(results, clips)],
                            seconds / len(clips)))
        log(out[-1])
    for name, overrides in post_rows:
        seg = segmenter(overrides)
        out.append(make_row(name, overrides, [score_clip(seg, r, c[2]) for r, c in zip(first_results, clips)], None))
        log(out[-1])
    return out


def run_model(model_dir: str, clips, rows, post_rows, workers: int, log) -> list[dict]:
    """The noun rows: mean IoU of ``iter_labels``' masks."""
    return run_rows(model_dir, clips, rows, post_rows, workers, log, score, _row)


def _row(name: str, settings: list[str], scores: list[dict[str, float | None]], seconds: float | None) -> dict:
    """A table row from each clip's per-class IoUs (None: the class is not in the clip)."""
    per_clip = [np.mean([v for v in ious.values() if v is not None]) for ious in scores]
    per_class = {s: [ious[s] for ious in scores if ious.get(s) is not None] for s in SHAPES}
    return {"row": name, "settings": settings, "miou": float(np.mean(per_clip)),
            "per_clip": [round(float(v), 4) for v in per_clip],
            "per_class": {k: (float(np.mean(v)) if v else None) for k, v in per_class.items()},
            "model_s_per_clip": seconds}


VOCABULARY_ROWS = [
    ("all four shapes (the preset: presence decision)", []),
    ("all four shapes, prompt \"A video.\"", ["inversion.prompt=A video."]),
]
VOCABULARY_POST_ROWS = [
    ("all four shapes, no presence decision", ["presence.threshold=null"]),
    ("presence threshold 0 (the library default)", ["presence.threshold=0.0"]),
    ("presence threshold 0.25", ["presence.threshold=0.25"]),
    ("presence threshold 0.5", ["presence.threshold=0.5"]),
    ("presence threshold 1.0", ["presence.threshold=1.0"]),
]


def run_vocabulary(model_dir: str, clips, workers: int, log) -> list[dict]:
    """The full-vocabulary protocol: every clip asked for all four shapes (rows above), beside the present-only
    protocol (the preset, with and without the presence decision). Each row: mean IoU over the present shapes, the
    share of pixels the absent shapes took, and the presence decision's accuracy and AUROC over (clip, shape)."""
    from vidseg.presence import decide_presence

    def score_clip(seg: VideoSegmenter, result, truth: np.ndarray) -> dict:
        labels = np.stack([lab for _, lab in seg.iter_labels(result)])
        presence = decide_presence(result, seg.config.presence.threshold, seg.config.presence.peak_share)
        in_clip = [bool((truth == shape_label(c)).any()) for c in result.classes]
        return {"ious": class_ious(labels, truth, result.classes),
                "absent_pixels": sum(absent_pixels(labels, truth, result.classes).values()),
                "pixels": int(labels.size), "truth": in_clip,
                "scores": None if presence.scores is None else presence.scores.tolist(),
                "decided": presence.present.tolist()}

    every_shape = [(path, list(SHAPES), truth) for path, _, truth in clips]
    return [*run_rows(model_dir, clips, [("present shapes only (the preset)", [])],
                      [("present shapes only, no presence decision", ["presence.threshold=null"])], workers, log,
                      score_clip, _vocabulary_row),
            *run_rows(model_dir, every_shape, VOCABULARY_ROWS, VOCABULARY_POST_ROWS, workers, log, score_clip,
                      _vocabulary_row)]


def _vocabulary_row(name: str, settings: list[str], scores: list[dict], seconds: float | None) -> dict:
    per_clip = [np.mean([v for v in s["ious"].values() if v is not None]) for s in scores]
    truth = np.concatenate([s["truth"] for s in scores])
    decided = np.concatenate([s["decided"] for s in scores])
    row = {"row": name, "settings": settings, "miou": float(np.mean(per_clip)),
           "absent_pixel_percent": 100 * sum(s["absent_pixels"] for s in scores) / sum(s["pixels"] for s in scores),
           "presence_accuracy": float((truth == decided).mean()), "presence_auroc": None,
           "model_s_per_clip": seconds}
    if all(s["scores"] is not None for s in scores) and 0 < truth.sum() < len(truth):
        values = np.concatenate([s["scores"] for s in scores])
        row["presence_auroc"] = auroc(values, truth)
    return row


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties half)."""
    pos, neg = scores[positive], scores[~positive]
    above = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(above / (len(pos) * len(neg)))


def print_vocabulary_row(row: dict, prefix: str = "") -> None:
    secs = f"{row['model_s_per_clip']:6.1f} s" if row["model_s_per_clip"] is not None else "  (same maps)"
    auc = f"{row['presence_auroc']:.3f}" if row["presence_auroc"] is not None else "  -  "
    print(f"{prefix}{row['row']:<52} mIoU {row['miou']:.3f}   absent pixels {row['absent_pixel_percent']:.3f} %   "
          f"presence accuracy {row['presence_accuracy']:.3f}  AUROC {auc}   {secs}", flush=True)


def make_motion_clips(count: int, folder: Path, first_seed: int = 0) -> list:
    """Held-out motion clips written as videos: (path, shapes + verbs, the clip)."""
    clips = []
    for seed in range(first_seed, first_seed + count):
        clip = render_motion_clip(seed, num_frames=24, height=128, width=192)
        path, _ = write_toy_clip(folder / f"motion{seed:03d}.mp4", clip)
        clips.append((path, clip.classes + clip.verb_names, clip))
    return clips


def run_motion(model_dir: str, clips, rows, post_rows, workers: int, log) -> list[dict]:
    """The motion rows: each clip's saliency through ``vidseg.localize.localize`` and its masks, scored against the
    clip's truth (post rows redo only the decision and the masks)."""
    from vidseg.localize import localize

    def score_clip(seg: VideoSegmenter, result, clip) -> dict:
        truth = {c: clip.truth(c) for c in result.classes}
        return score_localization(localize(result, seg.config), truth, seg.config)

    return run_rows(model_dir, clips, rows, post_rows, workers, log, score_clip, _motion_row)


def _motion_row(name: str, settings: list[str], scores: list[dict], seconds: float | None) -> dict:
    """A motion row: per verb (and over the shapes, as nouns) the mean over clips of each measure."""
    row = {"row": name, "settings": settings, "model_s_per_clip": seconds, "verbs": {}}
    for concept in (*VERBS, "nouns"):
        picked = [s[c] for s in scores for c in s if (c == concept if concept != "nouns" else c in SHAPES)]
        if picked:
            hits = [p.pointing for p in picked if p.pointing is not None]
            row["verbs"][concept] = {"temporal_iou": float(np.mean([p.temporal_iou for p in picked])),
                                     "spatiotemporal_iou": float(np.mean([p.spatiotemporal_iou for p in picked])),
                                     "pointing": float(np.mean(hits)) if hits else None, "count": len(picked)}
    verbs = [row["verbs"][v] for v in VERBS if v in row["verbs"]]
    row["mean_temporal_iou"] = float(np.mean([v["temporal_iou"] for v in verbs]))
    row["mean_spatiotemporal_iou"] = float(np.mean([v["spatiotemporal_iou"] for v in verbs]))
    return row


def print_motion_row(row: dict, prefix: str = "") -> None:
    parts = []
    for concept, v in row["verbs"].items():
        pointing = f"{v['pointing']:.2f}" if v["pointing"] is not None else "  - "
        parts.append(f"{concept} t {v['temporal_iou']:.3f} st {v['spatiotemporal_iou']:.3f} pt {pointing}")
    secs = f"{row['model_s_per_clip']:6.1f} s" if row["model_s_per_clip"] is not None else "  (same maps)"
    print(f"{prefix}{row['row']:<56} tIoU {row['mean_temporal_iou']:.3f} stIoU {row['mean_spatiotemporal_iou']:.3f}"
          f"   {'   '.join(parts)}   {secs}", flush=True)


def print_row(row: dict, prefix: str = "") -> None:
    classes = "  ".join(f"{k} {v:.3f}" if v is not None else f"{k}   -  " for k, v in row["per_class"].items())
    secs = f"{row['model_s_per_clip']:6.1f} s" if row["model_s_per_clip"] is not None else "  (same maps)"
    print(f"{prefix}{row['row']:<52} mIoU {row['miou']:.3f}   {classes}   {secs}", flush=True)


@torch.no_grad()
def caption_gap(model_dir: str, count: int, timesteps=(399, 899)) -> dict[str, dict[str, float]]:
    """Does the denoiser use its caption? v-prediction MSE on held-out clips with their own caption and with
    another clip's, at a few timesteps (seeded noise). A gap near 0 means the text is ignored by the denoiser."""
    from vidseg.video.sample import fit_frames

    model = load_model(model_dir)
    cfg = load_config(model_dir_config=model_folder_config(model_dir))
    clips = [render_clip(seed, num_frames=cfg.video.num_frames, height=128, width=192) for seed in range(count)]
    latents = [model.encode_video(fit_frames(c.frames, cfg.video.height, cfg.video.width)[0]) for c in clips]
    prompts = [model.encode_text(f"A video of {c.caption}.", []) for c in clips]
    alphas = model.scheduler.alphas_cumprod.float()
    generator = torch.Generator().manual_seed(0)
    out = {}
    for t in timesteps:
        a = alphas[t]
        own, other = [], []
        for i, x0 in enumerate(latents):
            noise = torch.randn(x0.shape, generator=generator)
            noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
            target = a.sqrt() * noise - (1 - a).sqrt() * x0
            for prompt, bucket in ((prompts[i], own), (prompts[(i + 1) % count], other)):
                bucket.append(float((model.predict(noisy, t, prompt) - target).square().mean()))
        out[str(t)] = {"own": float(np.mean(own)), "other": float(np.mean(other)),
                       "gap": float(np.mean(other) / np.mean(own) - 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder to score (from tools/train_toy_model.py)")
    parser.add_argument("--clips", type=int, default=24, help="held-out clips (seeds FIRST..FIRST+N-1); 8 clips "
                                                               "vary by +-0.1 in mIoU with how many objects they hold")
    parser.add_argument("--first-seed", type=int, default=0, help="first clip seed; 500000 scores the trainer's "
                                                                  "validation clips, where presets are chosen")
    parser.add_argument("--only", choices=["defaults", "maps", "post", "all"], default="all",
                        help="defaults: the preset row, plus the controls; maps: the preset row and a row per map "
                             "kind the backbone gives (IMAP, GramCol and the baselines); post: the preset row and "
                             "the post-processing rows (one model pass)")
    parser.add_argument("--no-controls", action="store_true", help="skip the random-weight control models")
    parser.add_argument("--workers", type=int, default=1, help="refine worker processes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    parser.add_argument("--motion", action="store_true", help="verbs through vidseg localize on motion clips")
    parser.add_argument("--vocabulary", action="store_true", help="every clip asked for all four shapes (the "
                                                                  "full-vocabulary protocol) beside the present ones")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.motion:
        return motion_main(args)
    if args.vocabulary:
        return vocabulary_main(args)

    rows, post_rows = {"defaults": (MODEL_ROWS[:1], []), "maps": (MODEL_ROWS[:1], []),
                       "post": (MODEL_ROWS[:1], POST_ROWS), "all": (MODEL_ROWS, POST_ROWS)}[args.only]
    report: dict = {"model": args.model, "clips": args.clips, "first_seed": args.first_seed, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_clips(args.clips, tmp / "clips", args.first_seed)
        print(f"{args.model}: {args.clips} held-out toy clips from seed {args.first_seed}, 24 frames at 192 x 128 "
              f"({sum(len(c) for _, c, _ in clips)} objects)", flush=True)
        report["rows"] = run_model(args.model, clips, rows, post_rows, args.workers, print_row)
        if args.only in ("maps", "all"):
            report["rows"] += map_kind_rows(args.model, run_model, clips, args.workers, print_row,
                                            skip=preset_map_kind(args.model))
        report["caption_gap"] = caption_gap(args.model, args.clips)
        for t, gap in report["caption_gap"].items():
            print(f"caption gap at t={t}: v-MSE {gap['own']:.4f} with the clip's caption, {gap['other']:.4f} with "
                  f"another clip's ({100 * gap['gap']:+.1f} %)", flush=True)
        if not args.no_controls:
            # Controls: the random tiny model (its own preset), and the toy architecture before training.
            tiny = make_tiny_model(tmp / "tiny")
            untrained = save_small_pipeline(build_tiny_pipeline(TOY_SPEC, seed=0), tmp / "untrained",
                                            TOY_SPEC.preset)
            for label, folder in (("control: random tiny model", tiny), ("control: untrained toy model", untrained)):
                [row] = run_model(str(folder), clips, MODEL_ROWS[:1], [], args.workers, lambda r: None)
                row["row"] = label
                report["rows"].append(row)
                print_row(row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def vocabulary_main(args: argparse.Namespace) -> int:
    report: dict = {"model": args.model, "clips": args.clips, "first_seed": args.first_seed, "vocabulary": True}
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(args.clips, Path(tmp) / "clips", args.first_seed)
        absent = sum(len(SHAPES) - len(c) for _, c, _ in clips)
        print(f"{args.model}: {args.clips} held-out toy clips from seed {args.first_seed}, 24 frames at 192 x 128 "
              f"({sum(len(c) for _, c, _ in clips)} present and {absent} absent shapes)", flush=True)
        report["rows"] = run_vocabulary(args.model, clips, args.workers, print_vocabulary_row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def motion_main(args: argparse.Namespace) -> int:
    rows, post_rows = {"defaults": (MOTION_ROWS[:1], []), "maps": (MOTION_ROWS[:1], []),
                       "post": (MOTION_ROWS[:1], MOTION_POST_ROWS), "all": (MOTION_ROWS, MOTION_POST_ROWS)}[args.only]
    report: dict = {"model": args.model, "clips": args.clips, "first_seed": args.first_seed, "motion": True}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_motion_clips(args.clips, tmp / "clips", args.first_seed)
        verbs = sum(len(c.verb_names) for _, _, c in clips)
        print(f"{args.model}: {args.clips} held-out motion clips from motion seed {args.first_seed}, 24 frames at "
              f"192 x 128 ({verbs} verbs)", flush=True)
        report["rows"] = run_motion(args.model, clips, rows, post_rows, args.workers, print_motion_row)
        if args.only in ("maps", "all"):
            report["rows"] += map_kind_rows(args.model, run_motion, clips, args.workers, print_motion_row,
                                            skip=preset_map_kind(args.model))
        if not args.no_controls:
            untrained = save_small_pipeline(build_tiny_pipeline(TOY_SPEC, seed=0), tmp / "untrained",
                                            TOY_SPEC.preset)
            [row] = run_motion(str(untrained), clips, MOTION_ROWS[:1], [], args.workers, lambda r: None)
            row["row"] = "control: untrained toy model"
            report["rows"].append(row)
            print_motion_row(row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
