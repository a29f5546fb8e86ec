#!/usr/bin/env python
"""Per-stage time and peak memory of ``vidseg predict``, and the cost of reading the maps (stock vs instrumented).

The stage table is a meter around the product: the bench runs ``VideoSegmenter.compute_saliency`` and
``export_labels`` -- what ``vidseg predict`` runs -- with a ``Meter`` as the pipeline's progress reporter, so every
stage the pipeline announces becomes a row (text encoding, decode, VAE encode, each inversion step, the map-reading
forward, refine + export), and ``pipeline s`` beside it is what the same run writes into ``labels.json``. Then the
overhead check: the same forward on the same model and inputs, stock and with the map read-out, timed alternately
after a warm-up of each.

Memory: peak RSS of this process per stage (the kernel's high-water mark, reset at each stage start through
/proc/self/clear_refs), the peak summed RSS of its child processes during refine + export (worker processes,
sampled every 50 ms), and on a GPU ``torch.cuda.max_memory_allocated``.

Models:
  tiny (default)        ``make_tiny_model`` (``--family wan``: the tiny Wan) written to a temporary folder, loaded
                        with ``load_model``; or ``--model PATH`` for any model folder.
  cogvideox-2b, cogvideox-5b, wan2.1-1.3b, wan2.1-14b
                        random weights at the real shapes (``vidseg.models.geometry.stand_in_model``), built in
                        memory: speed and memory do not depend on weight values. ``--layers`` / ``--t5-layers``
                        truncate the depth for CPU runs. The overhead forward runs at the checkpoint's native
                        clip (49 x 480 x 720: 13 x 30 x 45 tokens; Wan 49 x 480 x 832: 13 x 30 x 52), whatever
                        ``--frames`` / ``--size`` give the pipeline stages.

Examples:
  python tools/bench.py --json out/bench_tiny.json
  python tools/bench.py --geometry cogvideox-2b --layers 2 --json out/bench_2b.json         # CPU: a few layers
  python tools/bench.py --geometry wan2.1-1.3b --device cuda --json out/bench_wan.json      # GPU: full depth
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLASSES = ("dog", "person", "grass")
# Real geometries on a CPU: a few blocks and small pixel stages, so a run takes minutes, not days.
CPU_DEFAULTS = {"layers": 2, "t5_layers": 2, "frames": 9, "size": (128, 192), "steps": 1, "repeats": 2}
MB = 2**20
# What the pipeline calls a window's part of a stage ("decode window 2/5", "read maps video").
_TAG = re.compile(r" (window \d+/\d+|video)$")


# -- memory and time --------------------------------------------------------------------------------------------


def _status_kb(field_name: str) -> int:
    match = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_mb() -> float:
    """Current resident set size of this process."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Resident high-water mark of this process since the last ``reset_peak_rss``."""
    return _status_kb("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Hand freed heap pages back to the kernel (glibc ``malloc_trim``), so that a stage's peak RSS is not set by
    memory that an earlier stage freed but the allocator kept. (Tensors are freed by reference counting; the
    bench collects cycles itself where it drops a model, as a full ``gc.collect`` costs ~0.25 s.)"""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class ChildrenRss:
    """Peak summed RSS of this process's descendants (e.g. the refine worker pool), sampled in a thread."""

    def __init__(self, interval_s: float = 0.05):
        import psutil

        self._me = psutil.Process()
        self._interval = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for child in self._me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    pass
            self.peak_mb = max(self.peak_mb, total / MB)
            self._stop.wait(self._interval)

    def __enter__(self) -> ChildrenRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Stage:
    """One stage of the run: all its spans (one per window, or per inversion step) added up."""

    name: str
    count: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process, all threads: steadier than wall time on a shared host
    peak_rss_mb: float = 0.0
    children_peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    step_seconds: list[float] = field(default_factory=list)  # inversion: each step


class Meter:
    """The pipeline's progress reporter (``vidseg.progress.Progress``) that measures instead of drawing.

    ``start(stage)`` opens a span, ``advance`` closes a step within it (inversion steps), ``finish`` closes the span;
    spans whose names differ only by their window tag add up into one ``Stage``.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.stages: dict[str, Stage] = {}
        self.rss_peak_scope = "stage" if reset_peak_rss() else "process lifetime"
        self._open: str | None = None
        self._children: ChildrenRss | None = None
        self._start = self._start_cpu = self._step_start = 0.0

    def lane(self) -> "Meter":
        return self

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, stage: str, total: int | None = None) -> None:
        self.finish()
        self._sync()
        release_free_memory()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._open = _TAG.sub("", stage)
        # Sampling children costs CPU time: only where workers run.
        self._children = ChildrenRss().__enter__() if self._open.startswith("refine") else None
        self._start = self._step_start = time.perf_counter()
        self._start_cpu = time.process_time()

    def advance(self, n: int = 1) -> None:
        if self._open is None:
            return
        self._sync()
        now = time.perf_counter()
        self.stages.setdefault(self._open, Stage(self._open)).step_seconds.append(now - self._step_start)
        self._step_start = now

    def finish(self) -> None:
        if self._open is None:
            return
        self._sync()
        stage = self.stages.setdefault(self._open, Stage(self._open))
        stage.count += 1
        stage.seconds += time.perf_counter() - self._start
        stage.cpu_seconds += time.process_time() - self._start_cpu
        stage.peak_rss_mb = max(stage.peak_rss_mb, peak_rss_mb())
        if self._children is not None:
            self._children.__exit__(None, None, None)
            stage.children_peak_rss_mb = max(stage.children_peak_rss_mb, self._children.peak_mb)
        if self.device.type == "cuda":
            stage.peak_cuda_mb = max(stage.peak_cuda_mb or 0.0, torch.cuda.max_memory_allocated(self.device) / MB)
        self._open = None


# -- the model and its settings ---------------------------------------------------------------------------------


def open_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, workdir: Path) -> tuple[Any, str]:
    """The model to bench and where its settings come from: (backbone, preset name or model folder)."""
    from vidseg.models.hub import load_model

    if args.geometry == "tiny":
        folder = args.model
        if folder is None:
            from vidseg.models.tiny import make_tiny_model

            folder = str(make_tiny_model(workdir / "tiny", family=args.family))
        return load_model(folder, device=str(device), dtype=dtype), folder
    from vidseg.models.geometry import stand_in_model

    model = stand_in_model(args.geometry, num_layers=args.layers, text_layers=args.t5_layers, dtype=dtype,
                           device=device)
    return model, args.geometry


def bench_config(args: argparse.Namespace, model: Any, settings_from: str) -> Any:
    """The preset (or model folder's settings), with the pipeline stages sized as asked. With a truncated depth every
    block is read (an upper bound on the read-out's cost: the real lists read 17 of 30 (2B), 21 of 42 (5B), 15 of 30
    (Wan 1.3B) and 21 of 40 (14B) blocks); ``--steps`` runs that many inversion steps (the read-out point moves;
    a forward costs the same at any timestep)."""
    from vidseg.config import load_config, model_folder_config

    real = args.geometry != "tiny"
    config = load_config(settings_from if real else None, model_dir_config=None if real else
                         model_folder_config(settings_from))
    depth = model.transformer_config["num_layers"]
    if any(layer >= depth for layer in config.maps.layers):
        config.maps.layers = list(range(depth))
    if args.frames:
        config.video.num_frames = args.frames
    if args.size:
        config.video.height, config.video.width = args.size
    if args.steps:
        config.inversion.readout_index = config.inversion.num_steps - args.steps
    config.export.workers = args.workers
    config.validate()
    model.check_settings(config, list(args.classes))
    return config


def bench_video(args: argparse.Namespace, config: Any, workdir: Path) -> Path:
    """``--video``, else a generated toy clip of two windows at the model's size and sampling rate."""
    if args.video:
        return Path(args.video)
    from vidseg.toyworld import render_clip, write_toy_clip

    clip = render_clip(0, num_frames=2 * config.video.num_frames - config.video.window_overlap,
                       height=config.video.height, width=config.video.width)
    return write_toy_clip(workdir / "clip.mp4", clip, fps=config.video.sample_fps or 8.0)[0]


# -- the runs ---------------------------------------------------------------------------------------------------


def run_stages(model: Any, config: Any, video: Path, classes: list[str], device: torch.device,
               workdir: Path) -> dict[str, Any]:
    """One ``vidseg predict`` of ``video``, metered stage by stage."""
    from vidseg.pipeline import VideoSegmenter

    meter = Meter(device)
    segmenter = VideoSegmenter(model, config)
    result = segmenter.compute_saliency(video, classes, progress=meter)
    segmenter.export_labels(result, workdir / "out", progress=meter)
    meter.finish()
    labels = json.loads((workdir / "out" / "labels.json").read_text())
    return {"stages": [asdict(s) for s in meter.stages.values()], "pipeline_seconds": labels["seconds"],
            "windows": len(result.window_maps), "frames": result.info.num_frames,
            "rss_peak_scope": meter.rss_peak_scope}


def overhead_inputs(model: Any, config: Any, num_concepts: int, native: bool) -> dict[str, Any]:
    """Random latents and text (the family's ``parts.random_text``) for one read-out forward, at the native clip
    (the model's ``sample_frames`` at its example size) or the config's."""
    import importlib

    generator = torch.Generator().manual_seed(0)
    if native:
        height, width = (int(v) for v in model.example_size.split("x"))
        clip = (model.transformer_config.get("sample_frames", 49), height, width)
    else:
        clip = (config.video.num_frames, config.video.height, config.video.width)
    latents = torch.randn(model.latent_shape(*clip), generator=generator)
    parts = importlib.import_module(model.parts_module)
    text = parts.random_text(model.transformer_config, num_concepts, generator)

    def moved(x: torch.Tensor) -> torch.Tensor:  # floats in the model's dtype; positions and masks stay integers
        return x.to(model.device, model.dtype) if x.is_floating_point() else x.to(model.device)

    fields = {f.name: moved(getattr(text, f.name)) for f in dataclasses.fields(text)}
    return {"latents": latents.to(model.device, model.dtype), "text": dataclasses.replace(text, **fields)}


def one_forward(variant: str, model: Any, config: Any, inputs: dict[str, Any], timestep: float) -> dict[str, float]:
    """Time and peak memory of one forward: ``stock`` (diffusers' own processors) or ``readout`` (the configured map
    kind)."""
    meter = Meter(model.device)
    meter.start(variant)
    with torch.inference_mode():
        if variant == "stock":
            model.predict(inputs["latents"], timestep, inputs["text"])
        else:
            model.read_maps(inputs["latents"], timestep, inputs["text"], config.maps, kinds=(config.maps.kind,))
    meter.finish()
    stage = meter.stages[variant]
    return {"seconds": stage.seconds, "cpu_seconds": stage.cpu_seconds, "peak_rss_mb": stage.peak_rss_mb,
            "peak_cuda_mb": stage.peak_cuda_mb}


def compare_forwards(model: Any, config: Any, classes: list[str], repeats: int, native: bool) -> dict[str, Any]:
    """Stock vs read-out forward on the same model and inputs: a warm-up of each, then ``repeats`` alternating
    pairs (which one goes first alternates too)."""
    inputs = overhead_inputs(model, config, len(classes), native)
    timestep = model.readout_timestep(config.inversion)
    runs: dict[str, list[dict[str, float]]] = {"stock": [], "readout": []}
    for variant in ("stock", "readout"):
        one_forward(variant, model, config, inputs, timestep)
    for i in range(repeats):
        for variant in (("stock", "readout") if i % 2 == 0 else ("readout", "stock")):
            runs[variant].append(one_forward(variant, model, config, inputs, timestep))

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[variant])

    memory_key = "peak_cuda_mb" if model.device.type == "cuda" else "peak_rss_mb"
    return {
        "latents": list(inputs["latents"].shape), "layers_read": list(config.maps.layers),
        "map": config.maps.kind, "timestep": timestep, "runs": runs,
        "time_ratio_wall": median("readout", "seconds") / median("stock", "seconds"),
        "time_ratio_cpu": median("readout", "cpu_seconds") / median("stock", "cpu_seconds"),
        "memory_key": memory_key,
        "memory_ratio": median("readout", memory_key) / median("stock", memory_key),
    }


# -- bfloat16 against float32 ----------------------------------------------------------------------------------


class ReadoutLog:
    """Stands in for the read-out's ``surrogate_tokens`` and ``frame_separation`` during one forward (the product's
    own path, ``Backbone.read_maps``), keeping what each returns, and beside each surrogate the one a read-out in
    the activations' own dtype would pick (``native``: the QK logits in that dtype before the argmax) and the one
    picked from the same queries and keys rounded to bfloat16 (``rounded``: on a float32 model, what the last
    rounding of the read-out's inputs alone flips)."""

    def __init__(self):
        from vidseg.maps import readout

        self.module = readout
        self.surrogates: list[torch.Tensor] = []  # [heads, slots, frames] per call, in call order
        self.native: list[torch.Tensor] = []
        self.rounded: list[torch.Tensor] = []
        self.separation: list[torch.Tensor] = []  # [heads] per call

    def surrogate_tokens(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        idx = self.originals["surrogate_tokens"](q, k)
        heads, frames, patches, head_dim = q.shape
        logits = k @ q.reshape(heads, frames * patches, head_dim).transpose(1, 2)  # in q's dtype
        self.surrogates.append(idx.cpu())
        self.native.append(logits.view(heads, -1, frames, patches).argmax(dim=3).cpu())
        self.rounded.append(self.originals["surrogate_tokens"](q.bfloat16(), k.bfloat16()).cpu())
        return idx

    def frame_separation(self, x: torch.Tensor) -> torch.Tensor:
        score = self.originals["frame_separation"](x)
        self.separation.append(score.float().cpu())
        return score

    def __enter__(self) -> "ReadoutLog":
        self.originals = {name: getattr(self.module, name) for name in ("surrogate_tokens", "frame_separation")}
        for name in self.originals:
            setattr(self.module, name, getattr(self, name))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self.originals.items():
            setattr(self.module, name, original)


def precision_models(args: argparse.Namespace, device: torch.device) -> tuple[Any, Any]:
    """The same weights twice: in bfloat16, and those bfloat16 values held in float32. Random real-shape weights,
    or with ``--geometry tiny --model FOLDER`` a model folder's own (trained) weights."""
    from vidseg.models.geometry import stand_in_model
    from vidseg.models.hub import load_model

    def build(dtype: torch.dtype) -> Any:
        if args.geometry == "tiny":
            return load_model(args.model, device=str(device), dtype=dtype)
        return stand_in_model(args.geometry, num_layers=args.layers, text_layers=1, dtype=dtype, device=device)

    low, high = build(torch.bfloat16), build(torch.float32)
    with torch.no_grad():
        for param in high.transformer.parameters():
            param.copy_(param.to(torch.bfloat16))
    return low, high


def random_precision_inputs(args: argparse.Namespace, model: Any, device: torch.device) -> tuple:
    """Random latents and text for random weights, at the native frame size, and the preset's settings with the
    map layers the truncated depth keeps (all blocks when it keeps none)."""
    import importlib

    from vidseg.config import load_config

    config = load_config(args.geometry)
    depth = model.transformer_config["num_layers"]
    config.maps.layers = [i for i in config.maps.layers if i < depth] or list(range(depth))
    frames = args.precision_frames or (model.transformer_config.get("sample_frames", 49) if device.type == "cuda"
                                       else 9)
    height, width = args.precision_size or (int(v) for v in model.example_size.split("x"))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(model.latent_shape(frames, height, width), generator=generator)
    text = importlib.import_module(model.parts_module).random_text(model.transformer_config,
                                                                  args.precision_concepts, generator)
    return [(latents, text, model.readout_timestep(config.inversion))], config


def toy_precision_inputs(folder: str, model: Any, clips: int) -> tuple:
    """Toy clips 0..clips-1 at the folder's window size, each with its caption and shapes, brought to the read-out
    point by ``model``: a list of (noisy latents, text, timestep), and the folder's settings."""
    from vidseg.config import load_config, model_folder_config
    from vidseg.toyworld import render_clip
    from vidseg.video.sample import fit_frames

    config = load_config(model_dir_config=model_folder_config(folder))
    v = config.video
    inputs = []
    for seed in range(clips):
        clip = render_clip(seed, num_frames=v.num_frames, height=v.height, width=v.width)
        text = model.encode_text(f"A video of {clip.caption}.", clip.classes)
        with torch.inference_mode():
            latents = model.encode_video(fit_frames(clip.frames, v.height, v.width)[0])
            noisy, timestep = model.noise_to_readout(latents, text, config.inversion)
        inputs.append((noisy.cpu(), text, timestep))
    return inputs, config


def compare_precision(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One read-out forward of every map kind on a bfloat16 model and on its float32 twin (same weights, same
    inputs): how often the surrogate tokens and motion heads agree, and each kind's relative map error. The
    read-out computes in at least float32 from the model's activations; ``native`` is what bfloat16 arithmetic of
    the QK matching would have picked from the same activations. Random weights read random latents and text; a
    model folder reads toy clips (``--precision-clips``) with their captions and shapes, inverted by the float32
    twin to the read-out point."""
    low, high = precision_models(args, device)
    if args.geometry == "tiny":
        inputs, config = toy_precision_inputs(args.model, high, args.precision_clips)
    else:
        inputs, config = random_precision_inputs(args, high, device)
    depth = high.transformer_config["num_layers"]
    kinds = high.map_kinds
    runs = {}
    for name, model in (("bfloat16", low), ("float32", high)):
        start, maps = time.perf_counter(), {kind: [] for kind in kinds}
        with ReadoutLog() as log, torch.inference_mode():
            for latents, text, timestep in inputs:  # read_maps puts the text on the model's device and dtype
                read = model.read_maps(latents.to(device), timestep, text, config.maps, kinds=kinds)
                for kind in kinds:
                    maps[kind].append(read[kind].flatten())
        runs[name] = ({kind: torch.cat(m) for kind, m in maps.items()}, log, time.perf_counter() - start)
    (low_maps, low_log, low_s), (high_maps, high_log, high_s) = runs["bfloat16"], runs["float32"]
    reference = torch.cat([i.flatten() for i in high_log.surrogates])

    def agreement(picked: list[torch.Tensor]) -> float:
        return float((torch.cat([i.flatten() for i in picked]) == reference).double().mean())

    k = config.maps.top_k_heads
    low_sep = torch.cat(low_log.separation).view(len(inputs) * len(config.maps.layers), -1)
    high_sep = torch.cat(high_log.separation).view(len(inputs) * len(config.maps.layers), -1)
    same_heads = [set(a.topk(k).indices.tolist()) == set(b.topk(k).indices.tolist())
                  for a, b in zip(low_sep, high_sep)]
    map_error = {kind: float((low_maps[kind] - high_maps[kind]).norm() / high_maps[kind].norm()) for kind in kinds}
    return {
        "geometry": args.model if args.geometry == "tiny" else args.geometry, "blocks": depth,
        "layers_read": config.maps.layers, "top_k_heads": k, "clips": len(inputs),
        "latents": list(inputs[0][0].shape), "concepts": sum(len(text.concepts) for _, text, _ in inputs),
        "timestep": inputs[0][2],
        "cases": int(reference.numel()),
        "surrogate_agreement": agreement(low_log.surrogates),
        "surrogate_agreement_native_bf16": agreement(low_log.native),
        "surrogate_agreement_fp32_native": agreement(high_log.native),  # a check: float32 has no rounding to add
        # The float32 twin with only its QK-matching inputs rounded: the share of the flips the read-out's own
        # inputs cause; the rest comes from the bfloat16 forward before them.
        "surrogate_agreement_fp32_inputs_rounded": agreement(high_log.rounded),
        "motion_heads_same_layers": f"{sum(same_heads)}/{len(same_heads)}",
        "relative_map_error": map_error, "seconds": {"bfloat16": low_s, "float32": high_s},
    }


def precision_lines(result: dict[str, Any]) -> str:
    lines = [f"bfloat16 against float32, same weights ({result['geometry']}, {result['blocks']} blocks, map layers "
             f"{result['layers_read']}, {result['clips']} clip(s) of latents {result['latents']}, {result['concepts']} "
             f"concepts in all):",
             f"  surrogate tokens agree in {100 * result['surrogate_agreement']:.3f} % of {result['cases']} (layer, "
             f"head, slot, frame) cases with the read-out's float32 arithmetic; "
             f"{100 * result['surrogate_agreement_native_bf16']:.3f} % if the QK matching ran in bfloat16",
             f"  (the float32 twin with only its queries and concept keys rounded to bfloat16: "
             f"{100 * result['surrogate_agreement_fp32_inputs_rounded']:.3f} %; the rest of the disagreement comes "
             f"from the bfloat16 forward before the read-out)",
             f"  motion heads: the same top-{result['top_k_heads']} in {result['motion_heads_same_layers']} layers"]
    lines += [f"  relative map error {kind}: {error:.2e}" for kind, error in result["relative_map_error"].items()]
    return "\n".join(lines)


# -- output -----------------------------------------------------------------------------------------------------


def stage_table(report: dict[str, Any], cuda: bool) -> str:
    pipeline = report["pipeline_seconds"]
    keys = {"encode text": "text", "decode": "decode", "VAE encode": "vae", "read maps": "maps"}
    head = ["stage", "n", "wall s", "per run s", "CPU s", "pipeline s", "peak RSS MB", "workers RSS MB"]
    head += ["CUDA peak MB"] if cuda else []
    rows = []
    for s in report["stages"]:
        key = keys.get(s["name"], "inversion" if "inversion" in s["name"] or "renoise" in s["name"] else None)
        count = len(s["step_seconds"]) or s["count"]
        row = [s["name"], str(count), f"{s['seconds']:.2f}", f"{s['seconds'] / max(count, 1):.3f}",
               f"{s['cpu_seconds']:.2f}", f"{pipeline[key]:.2f}" if key in pipeline else "",
               f"{s['peak_rss_mb']:.0f}", f"{s['children_peak_rss_mb']:.0f}" if s["children_peak_rss_mb"] else ""]
        row += [f"{s['peak_cuda_mb']:.0f}" if s["peak_cuda_mb"] is not None else ""] if cuda else []
        rows.append(row)
    return _markdown(head, rows)


def overhead_lines(result: dict[str, Any]) -> str:
    memory = "CUDA peak" if result["memory_key"] == "peak_cuda_mb" else "peak RSS"
    stock = [r["seconds"] for r in result["runs"]["stock"]]
    readout = [r["seconds"] for r in result["runs"]["readout"]]
    return "\n".join([
        f"forward on latents {result['latents']}, map layers {result['layers_read']}, t = {result['timestep']}",
        f"stock   s: {', '.join(f'{v:.3f}' for v in stock)}",
        f"readout s: {', '.join(f'{v:.3f}' for v in readout)}",
        f"read-out / stock: wall x{result['time_ratio_wall']:.3f}, CPU x{result['time_ratio_cpu']:.3f}, "
        f"{memory} x{result['memory_ratio']:.3f}",
    ])


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from vidseg.models.geometry import geometries
    from vidseg.registry import BACKBONES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--geometry", choices=("tiny", *geometries()), default="tiny")
    parser.add_argument("--model", help="tiny geometry: a model folder instead of a new tiny model")
    parser.add_argument("--family", choices=BACKBONES.names(), default=BACKBONES.names()[0], help="the tiny model's")
    parser.add_argument("--layers", type=int, help="transformer blocks kept (real geometries; CPU default 2)")
    parser.add_argument("--t5-layers", type=int, help="text-encoder layers of 24 (real geometries; CPU default 2)")
    parser.add_argument("--frames", type=int, help="frames per window of the pipeline stages (CPU default 9 for "
                                                   "real geometries)")
    parser.add_argument("--size", help="HxW of the pipeline stages (CPU default 128x192 for real geometries)")
    parser.add_argument("--steps", type=int, help="inversion steps run (CPU default 1 for real geometries)")
    parser.add_argument("--repeats", type=int, help="timed stock/read-out pairs after the warm-up (default 3; "
                                                    "CPU real geometries 2)")
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--video", help="video to segment (default: a generated toy clip of two windows)")
    parser.add_argument("--device", help="cuda | cpu (default cuda when present)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                        help="default bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--workers", type=int, default=0, help="refine worker processes (0: one per core)")
    parser.add_argument("--only", choices=("stages", "overhead", "precision"),
                        help="run only the stages, only the overhead, or only the bfloat16-against-float32 check")
    parser.add_argument("--precision", action="store_true", help="also compare a bfloat16 model's maps with its "
                                                                  "float32 twin's (real geometries, or --model)")
    parser.add_argument("--precision-frames", type=int, help="frames of the precision check's clip (default 49 on "
                                                             "a GPU, 9 on a CPU), at the native size")
    parser.add_argument("--precision-size", help="HxW of the precision check's clip (default the native size)")
    parser.add_argument("--precision-concepts", type=int, default=8, help="concepts in the precision check "
                                                                           "(random weights)")
    parser.add_argument("--precision-clips", type=int, default=8, help="toy clips the precision check reads "
                                                                        "(--model)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    if args.precision_size:
        args.precision_size = tuple(int(v) for v in args.precision_size.lower().split("x"))
    return args


def bench_pipeline(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, real: bool) -> dict[str, Any]:
    """The stage table and the overhead forward pair, printed as they finish."""
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vidseg-bench-") as tmp:
        workdir = Path(tmp)
        load = Meter(device)
        load.start("load")
        model, settings_from = open_model(args, device, dtype, workdir)
        load.finish()
        config = bench_config(args, model, settings_from)
        report["load"] = asdict(load.stages["load"])
        report["settings"] = config.to_dict()
        print(f"{args.geometry} ({settings_from}) on {device}, {str(dtype).split('.')[-1]}: loaded in "
              f"{report['load']['seconds']:.1f} s, {model.transformer_config['num_layers']} blocks", flush=True)
        if args.only != "overhead":
            video = bench_video(args, config, workdir)
            report.update(run_stages(model, config, video, list(args.classes), device, workdir))
            print(f"\n{video.name}: {report['frames']} frames, {report['windows']} windows of "
                  f"{config.video.num_frames} at {config.video.height}x{config.video.width}\n", flush=True)
            print(stage_table(report, device.type == "cuda"), flush=True)
        if args.only != "stages":
            report["overhead"] = compare_forwards(model, config, list(args.classes), args.repeats, native=real)
            print("\n" + overhead_lines(report["overhead"]), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if device.type == "cuda" else torch.float32
    real, on_cpu = args.geometry != "tiny", device.type == "cpu"
    for key, value in CPU_DEFAULTS.items():  # smaller runs of the real geometries on a CPU
        if getattr(args, key) is None and real and on_cpu:
            setattr(args, key, value)
    args.repeats = args.repeats or 3
    if real and args.t5_layers is None:
        args.t5_layers = 24
    report: dict[str, Any] = {"geometry": args.geometry, "device": str(device), "dtype": str(dtype).split(".")[-1],
                              "classes": args.classes}
    if args.only == "precision" or args.precision:
        if not real and not args.model:
            raise SystemExit("the precision check needs --geometry (random weights) or --model FOLDER")
        report["precision"] = compare_precision(args, device)
        print(precision_lines(report["precision"]), flush=True)
    if args.only != "precision":
        report.update(bench_pipeline(args, device, dtype, real))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
