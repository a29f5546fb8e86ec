#!/usr/bin/env python
"""Per-stage wall time and peak memory of vidseg, and the cost of reading the maps (stock vs IMAP forward).

Stages, through the library's own functions: decode, text encoding, VAE encode, each DDIM inversion step, the
map-reading forward, saliency -> probabilities, refine (upsample + CRF), export. Then the overhead check: the same
forward on the same model and inputs with diffusers' stock attention processor and with IMAP extraction, timed
alternately after a warm-up of each.

Memory: peak RSS of this process per stage (the kernel's high-water mark, reset at each stage start through
/proc/self/clear_refs), the peak summed RSS of its child processes (refine workers; sampled every 50 ms), and on a
GPU ``torch.cuda.max_memory_allocated``. For the overhead check on a CPU, each variant's peak is measured in a fresh
process (``--memory subprocess``) so memory the allocator kept from earlier work cannot hide or inflate it.

Models:
  tiny (default)              ``make_tiny_model`` written to a temporary folder and opened with ``load_model``.
  cogvideox-2b / cogvideox-5b random weights at the real shapes (``vidseg.models.geometry``), built in memory.
                              Transformer stages run on the native 13 x 60 x 90 latent grid (13 x 30 x 45 video
                              tokens + 226 text tokens) whatever ``--frames`` / ``--size`` give the pixel stages.

Examples:
  python tools/bench.py --json out/bench_tiny.json
  python tools/bench.py --geometry cogvideox-2b --layers 2 --json out/bench_2b.json      # CPU: a few layers
  python tools/bench.py --geometry cogvideox-2b --only overhead --json out/overhead_2b.json  # GPU: all 30 layers
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "01_dog.mp4"
DEFAULT_CLASSES = ("dog", "person", "grass")
OVERHEAD_LIMIT = 1.15  # issue 5: the map-reading forward may cost at most this much more than the stock forward
CPU_DEFAULTS = {"layers": 2, "t5_layers": 2, "frames": 9, "size": (128, 192), "steps": 1, "repeats": 2}
MB = 2**20
READOUT_T = 399  # the presets' read-out timestep; a forward costs the same at any t


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
    name: str
    seconds: float
    cpu_seconds: float  # CPU time of this process, all threads: steadier than wall time on a shared host
    peak_rss_mb: float
    children_peak_rss_mb: float
    peak_cuda_mb: float | None
    note: str = ""


class Meter:
    """Records one ``Stage`` per measured span: wall time (device synchronised) and peak memory."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stages: list[Stage] = []
        self.rss_peak_scope = "stage" if reset_peak_rss() else "process lifetime"
        self._start = self._start_cpu = 0.0
        self._children: ChildrenRss | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, children: bool = False) -> None:
        """Begin a span; ``children`` also samples the RSS of child processes (it costs CPU time, so only for
        stages that have workers)."""
        self._sync()
        release_free_memory()
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._children = ChildrenRss().__enter__() if children else None
        self._start = time.perf_counter()
        self._start_cpu = time.process_time()

    def stop(self, name: str, note: str = "") -> Stage:
        self._sync()
        seconds = time.perf_counter() - self._start
        cpu_seconds = time.process_time() - self._start_cpu
        children_mb = 0.0
        if self._children is not None:
            self._children.__exit__(None, None, None)
            children_mb = self._children.peak_mb
        cuda = torch.cuda.max_memory_allocated(self.device) / MB if self.device.type == "cuda" else None
        stage = Stage(name, seconds, cpu_seconds, peak_rss_mb(), children_mb, cuda, note)
        self.stages.append(stage)
        return stage

    @contextmanager
    def measure(self, name: str, note: str = "", children: bool = False) -> Iterator[None]:
        self.start(children)
        yield
        self.stop(name, note)


# -- models -----------------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """Resolved benchmark settings (defaults depend on the geometry and the device)."""

    geometry: str
    device: torch.device
    dtype: torch.dtype
    layers: int | None  # transformer blocks kept (None: the model's own depth)
    t5_layers: int | None  # T5-XXL layers (real geometries only)
    frames: int
    size: tuple[int, int]
    steps: int | None  # inversion steps timed (None: all of the preset's)
    repeats: int
    classes: list[str]
    video: Path | None
    memory: str  # subprocess | in-process
    config: Any = None  # VidsegConfig of the geometry's preset


def resolve_setup(args: argparse.Namespace) -> Setup:
    from vidseg.config import load_config

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if device.type == "cuda" else torch.float32
    real = args.geometry != "tiny"
    on_cpu = device.type == "cpu"
    config = load_config(args.geometry if real else "tiny")

    def pick(value: Any, key: str, full: Any) -> Any:
        if value is not None:
            return value
        return CPU_DEFAULTS[key] if real and on_cpu else full

    from vidseg.models.geometry import full_depth

    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    video = Path(args.video) if args.video else (DEFAULT_VIDEO if DEFAULT_VIDEO.exists() else None)
    return Setup(
        geometry=args.geometry,
        device=device,
        dtype=dtype,
        layers=pick(args.layers, "layers", full_depth(args.geometry)) if real else None,
        t5_layers=pick(args.t5_layers, "t5_layers", 24) if real else None,
        frames=pick(args.frames, "frames", config.video.num_frames),
        size=pick(size, "size", (config.video.height, config.video.width)),
        steps=pick(args.steps, "steps", None),
        repeats=pick(args.repeats, "repeats", 3 if real else 10),
        classes=list(args.classes),
        video=video,
        memory=args.memory or ("in-process" if device.type == "cuda" else "subprocess"),
        config=config,
    )


def map_layers(setup: Setup, num_blocks: int) -> list[int]:
    """The preset's map layers at full depth; every block when the depth is truncated (an upper bound on the
    read-out cost: the real lists read 17 of 30 (2B) and 21 of 42 (5B) blocks)."""
    preset = [i for i in setup.config.maps.layers if i < num_blocks]
    return preset if len(preset) == len(setup.config.maps.layers) else list(range(num_blocks))


def build_transformer(setup: Setup, tiny_dir: Path | None) -> Any:
    if setup.geometry == "tiny":
        from vidseg.models.load import load_model

        return load_model(str(tiny_dir), device=str(setup.device), dtype=setup.dtype).transformer
    from vidseg.models.geometry import build_random_transformer

    return build_random_transformer(setup.geometry, num_layers=setup.layers, dtype=setup.dtype, device=setup.device)


def native_latent_shape(transformer: Any) -> tuple[int, int, int, int, int]:
    """``[1, F, C, H, W]`` latents of the transformer's native clip (13 x 16 x 60 x 90 for CogVideoX)."""
    cfg = transformer.config
    frames = (cfg.sample_frames - 1) // cfg.temporal_compression_ratio + 1
    return 1, frames, cfg.in_channels, cfg.sample_height, cfg.sample_width


def overhead_inputs(transformer: Any, num_concepts: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random forward inputs at the native grid: noisy latents, prompt and concept embeddings."""
    cfg = transformer.config
    param = next(transformer.parameters())
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "latents": native_latent_shape(transformer),
        "prompt_embeds": (1, cfg.max_text_seq_length, cfg.text_embed_dim),
        "concept_embeds": (num_concepts, cfg.text_embed_dim),
    }
    return {k: torch.randn(s, generator=generator).to(param.device, param.dtype) for k, s in shapes.items()}


def run_forward(variant: str, transformer: Any, inputs: dict[str, torch.Tensor], timestep: int,
                layers: list[int], top_k: int, concept_slots: str) -> None:
    """One transformer forward: ``stock`` (diffusers' processor) or ``imap`` (concept stream + map read-out)."""
    from vidseg.imap import extract_maps
    from vidseg.models.forward import predict_velocity

    with torch.inference_mode():
        if variant == "stock":
            predict_velocity(transformer, inputs["latents"], timestep, inputs["prompt_embeds"])
        else:
            extract_maps(transformer, inputs["latents"], timestep, inputs["prompt_embeds"], inputs["concept_embeds"],
                         layers=layers, top_k=top_k, concept_slots=concept_slots)


# -- pipeline stages --------------------------------------------------------------------------------------------


def generated_video(directory: Path, num_frames: int, height: int, width: int, fps: float = 24.0) -> Path:
    """An mp4 of a bright square sliding over a textured background (when no real video is at hand)."""
    import av
    from fractions import Fraction

    rng = np.random.default_rng(0)
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    side = max(4, min(height, width) // 3)
    path = directory / "generated.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(num_frames):
            frame = background.copy()
            x = int((width - side) * t / max(num_frames - 1, 1))
            frame[(height - side) // 2:(height + side) // 2, x:x + side] = (230, 60, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def text_stage(setup: Setup, meter: Meter, tiny_model: Any, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt and class-name embeddings, T5 loaded (or built) and freed as the pipeline does."""
    if setup.geometry == "tiny":
        with meter.measure("text (T5, load + encode + free)", "tiny T5, 2 layers"):
            prompt_embeds, concept_embeds = tiny_model.encode_text(prompt, setup.classes)
            tiny_model.release_text_encoder()
        return prompt_embeds, concept_embeds

    from vidseg.models.geometry import build_random_text_encoder
    from vidseg.models.load import CONCEPT_MAX_TOKENS

    text_dtype = torch.float32 if setup.dtype == torch.float32 and setup.device.type != "cpu" else torch.bfloat16
    with meter.measure("build T5-XXL (random)", f"{setup.t5_layers} of 24 layers, {_dtype_name(text_dtype)}"):
        encoder = build_random_text_encoder(num_layers=setup.t5_layers, dtype=text_dtype, device=setup.device)
    text_len = 226
    # Token ids stand in for the tokenizer (microseconds); the encoder sees CogVideoXModel.encode_text's shapes.
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(3, 32000, (1, text_len), generator=generator).to(setup.device)
    class_ids = torch.randint(3, 32000, (len(setup.classes), CONCEPT_MAX_TOKENS), generator=generator).to(setup.device)
    note = f"{setup.t5_layers} of 24 layers, {text_len} + {len(setup.classes)} x {CONCEPT_MAX_TOKENS} tokens"
    with meter.measure(f"text (T5, {setup.t5_layers} of 24 layers)", note), torch.inference_mode():
        prompt_embeds = encoder(prompt_ids)[0].to(setup.dtype)
        concept_embeds = encoder(class_ids)[0][:, 0].to(setup.dtype)
    del encoder
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()
    return prompt_embeds, concept_embeds


def pipeline_stages(setup: Setup, meter: Meter, workdir: Path) -> dict[str, Any]:
    """Run every stage once on one model window of the video; returns what the overhead check reuses."""
    from vidseg.export import make_writers, write_saliency_npz
    from vidseg.imap import extract_maps
    from vidseg.inversion import encode_frames, invert_video, readout_timestep
    from vidseg.models.load import default_prompt, load_model
    from vidseg.probs import saliency_to_probs
    from vidseg.refine import to_labels
    from vidseg.video.read import open_video
    from vidseg.video.sample import crop_to_valid, fit_frames, latent_index, plan_sampling

    cfg = setup.config
    prompt = cfg.inversion.prompt or default_prompt(setup.classes)
    tiny_model = None
    if setup.geometry == "tiny":
        from vidseg.models.tiny import make_tiny_model

        tiny_dir = make_tiny_model(workdir / "tiny_model")
        tiny_model = load_model(str(tiny_dir), device=str(setup.device), dtype=setup.dtype,
                                vae_tiling=cfg.model.vae_tiling)
    prompt_embeds, concept_embeds = text_stage(setup, meter, tiny_model, prompt)

    if setup.geometry == "tiny":
        with meter.measure("load transformer + VAE", "tiny model from disk"):
            transformer, vae = tiny_model.transformer, tiny_model.vae
        scheduler = tiny_model.scheduler
    else:
        from vidseg.models.geometry import build_random_transformer, build_random_vae, geometry_scheduler

        with meter.measure("build transformer (random)", f"{setup.layers} blocks, {_dtype_name(setup.dtype)}"):
            transformer = build_random_transformer(setup.geometry, num_layers=setup.layers, dtype=setup.dtype,
                                                   device=setup.device)
        with meter.measure("build VAE (random)", _dtype_name(setup.dtype)):
            vae = build_random_vae(setup.geometry, dtype=setup.dtype, device=setup.device)
        scheduler = geometry_scheduler(setup.geometry)

    video = setup.video or generated_video(workdir, 4 * setup.frames, *setup.size)
    height, width = setup.size
    with meter.measure("decode", ""):
        reader = open_video(video, reader=cfg.video.reader)
        info = reader.info
        plan = plan_sampling(info.num_frames, info.fps, sample_fps=cfg.video.sample_fps, window_frames=setup.frames,
                             window_overlap=min(cfg.video.window_overlap, setup.frames - 1))
        frame_idx = plan.sampled_frames[plan.windows[0]]
        frames = reader.read(frame_idx)  # [T, H, W, 3] at the source size
        pixels, valid_box = fit_frames(frames, height, width, resize=cfg.video.resize)
        # The pipeline keeps its reader open for every window; here it is done, and decord's buffers (a few
        # hundred MB for 720p) would otherwise count in every later stage's peak.
        reader.close()
    meter.stages[-1].note = f"{video.name}: {setup.frames} frames {info.width}x{info.height} -> {height}x{width}"

    with meter.measure("VAE encode", f"{setup.frames} x {height} x {width}"):
        latents = encode_frames(vae, pixels.to(setup.device, setup.dtype))
    del vae
    gc.collect()

    native = native_latent_shape(transformer)
    token_note = ""
    if tuple(latents.shape) != native:
        # The transformer stages run at the real token count: random latents at the native grid.
        latents = torch.randn(native, generator=torch.Generator().manual_seed(0)).to(setup.device)
        token_note = "random latents at the native grid; "
    grid = (native[1], native[3] // transformer.config.patch_size, native[4] // transformer.config.patch_size)
    tokens = f"{grid[0]}x{grid[1]}x{grid[2]} = {grid[0] * grid[1] * grid[2]} video + " \
             f"{transformer.config.max_text_seq_length} text tokens"

    inv = cfg.inversion
    full_steps = inv.num_steps - inv.readout_index
    steps = full_steps if setup.steps is None else min(setup.steps, full_steps)
    step_note = f"{token_note}{tokens}; {steps} of {full_steps} steps timed"
    meter.start()

    def on_step(i: int, n: int) -> None:
        meter.stop(f"inversion step {i}/{n}", step_note)
        if i < n:
            meter.start()

    noisy, _ = invert_video(transformer, scheduler, latents, prompt_embeds, num_steps=inv.num_steps,
                            readout_index=inv.num_steps - steps, on_step=on_step)
    # The read-out runs at the preset's timestep whatever the number of steps timed (cost does not depend on t).
    timestep = readout_timestep(scheduler, inv.num_steps, inv.readout_index)

    layers = map_layers(setup, len(transformer.transformer_blocks))
    maps_note = f"{tokens}; layers {_layer_span(layers)} of {len(transformer.transformer_blocks)}"
    with meter.measure("maps (IMAP forward)", maps_note):
        maps = extract_maps(transformer, noisy.to(setup.dtype), timestep, prompt_embeds, concept_embeds,
                            layers=layers, top_k=cfg.maps.top_k_heads, concept_slots=cfg.maps.concept_slots)
        maps = crop_to_valid(maps[cfg.maps.map], valid_box, height, width)  # [C, F_lat, h, w]

    saliency = maps[:, latent_index(len(frame_idx))].permute(1, 0, 2, 3)  # [T, C, h, w]
    with meter.measure("saliency -> probabilities", f"{len(frame_idx)} frames, {len(setup.classes)} classes"):
        probs = saliency_to_probs(saliency, temperature=cfg.probs.temperature, background=cfg.probs.background,
                                  calibration=cfg.probs.calibration)
    frame_h, frame_w = frames.shape[1:3]
    refine_note = f"{cfg.upsample.method} upsample + CRF {cfg.crf.mode}, {len(frame_idx)} x {frame_h}x{frame_w}"
    with meter.measure("refine", refine_note, children=True):
        labels = to_labels(frames, probs, upsampler=cfg.upsample.method, crf=cfg.crf, workers=cfg.export.workers,
                           anyup_checkpoint=cfg.upsample.anyup_checkpoint)
    out_dir = workdir / "export"
    names = list(info.frame_names)
    unique = np.unique(frame_idx, return_index=True)[1]  # short videos pad windows by repeating frames
    export_note = f"{cfg.export.format}{' + overlay' if cfg.export.overlay else ''} + saliency.npz"
    with meter.measure("export", export_note, children=True):
        writers = make_writers(cfg.export.format, out_dir, setup.classes, overlay=cfg.export.overlay, fps=info.fps)
        for j in unique:
            for writer in writers:
                writer.add(int(frame_idx[j]), names[frame_idx[j]], labels[j], frames[j])
        for writer in writers:
            writer.close()
        write_saliency_npz(out_dir / "saliency.npz", maps.numpy(), {"classes": setup.classes, "timestep": timestep})
    return {"transformer": transformer, "tokens": tokens, "layers": layers}


# -- stock vs IMAP ----------------------------------------------------------------------------------------------


def memory_in_subprocess(args: argparse.Namespace, variant: str) -> dict[str, float]:
    """Peak RSS of one ``variant`` forward in a fresh process (same model build, same seeded inputs)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--measure-forward", variant, *args.forwarded]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of the {variant} forward failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_one_forward(setup: Setup, variant: str, workdir: Path) -> dict[str, float | None]:
    """Build the model and inputs, then measure one ``variant`` forward (the ``--memory subprocess`` child)."""
    tiny_dir = None
    if setup.geometry == "tiny":
        from vidseg.models.tiny import make_tiny_model

        tiny_dir = make_tiny_model(workdir / "tiny_model")
    transformer = build_transformer(setup, tiny_dir)
    inputs = overhead_inputs(transformer, len(setup.classes))
    return forward_memory(setup, variant, transformer, inputs, map_layers(setup, len(transformer.transformer_blocks)))


def forward_memory(setup: Setup, variant: str, transformer: Any, inputs: dict[str, torch.Tensor],
                   layers: list[int]) -> dict[str, float | None]:
    """Peak memory (and time) of one ``variant`` forward, with the memory held just before it as baseline."""
    device, cfg = setup.device, setup.config
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    meter = Meter(device)
    with meter.measure(variant):
        baseline_rss = rss_mb()  # after the meter's start has returned freed heap pages
        baseline_cuda = torch.cuda.memory_allocated(device) / MB if device.type == "cuda" else None
        run_forward(variant, transformer, inputs, READOUT_T, layers, cfg.maps.top_k_heads, cfg.maps.concept_slots)
    stage = meter.stages[-1]
    return {"seconds": stage.seconds, "peak_rss_mb": stage.peak_rss_mb, "baseline_rss_mb": baseline_rss,
            "peak_cuda_mb": stage.peak_cuda_mb, "baseline_cuda_mb": baseline_cuda}


def compare_forwards(setup: Setup, args: argparse.Namespace, transformer: Any, workdir: Path) -> dict[str, Any]:
    """Stock vs IMAP forward: time (warm-up, then alternating pairs) and peak memory, with their ratios."""
    cfg = setup.config
    layers = map_layers(setup, len(transformer.transformer_blocks))
    inputs = overhead_inputs(transformer, len(setup.classes))
    meter = Meter(setup.device)

    def forward(variant: str) -> Stage:
        with meter.measure(variant):
            run_forward(variant, transformer, inputs, READOUT_T, layers, cfg.maps.top_k_heads, cfg.maps.concept_slots)
        return meter.stages[-1]

    forward("stock"), forward("imap")  # warm-up: one-time allocations and kernel selection
    runs: dict[str, list[Stage]] = {"stock": [], "imap": []}
    for _ in range(setup.repeats):
        for variant in ("stock", "imap"):
            run = forward(variant)
            runs[variant].append(run)
            _log(f"  {variant}: {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU")

    # The verdict's clock: wall time on a GPU. On a CPU, the process's CPU time: on a shared host wall time also
    # measures the other tenants (both are reported).
    clock = "wall" if setup.device.type == "cuda" else "cpu"
    result: dict[str, Any] = {
        "layers_read": layers, "num_blocks": len(transformer.transformer_blocks), "repeats": setup.repeats,
        "latents": list(inputs["latents"].shape), "limit": OVERHEAD_LIMIT, "time_clock": clock,
    }
    for name, attr in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        ratios = [getattr(i, attr) / getattr(s, attr) for s, i in zip(runs["stock"], runs["imap"])]
        result[f"time_ratio_{name}"], result[f"time_ratios_{name}"] = statistics.median(ratios), ratios
    result["time_ratio"] = result[f"time_ratio_{clock}"]
    for variant in ("stock", "imap"):
        seconds, cpu_seconds = [s.seconds for s in runs[variant]], [s.cpu_seconds for s in runs[variant]]
        result[variant] = {"seconds": seconds, "median_s": statistics.median(seconds), "cpu_seconds": cpu_seconds,
                           "median_cpu_s": statistics.median(cpu_seconds),
                           "in_process_peak_rss_mb": max(s.peak_rss_mb for s in runs[variant]),
                           "peak_cuda_mb": max((s.peak_cuda_mb or 0.0) for s in runs[variant]) or None}
    _log("  imap: breakdown of the extra work")
    result["imap_breakdown"] = imap_breakdown(setup, transformer, inputs, layers)
    if setup.memory == "subprocess":
        for variant in ("stock", "imap"):
            _log(f"  {variant}: peak memory in a fresh process")
            result[variant]["memory"] = memory_in_subprocess(args, variant)
    else:
        for variant in ("stock", "imap"):
            result[variant]["memory"] = forward_memory(setup, variant, transformer, inputs, layers)
    result.update(_memory_ratios(result, setup.device))
    # The limit is stated for the real geometries; the tiny model's millisecond forwards only test the code path.
    within = result["time_ratio"] <= OVERHEAD_LIMIT and result["memory_ratio"] <= OVERHEAD_LIMIT
    result["within_limit"] = within if setup.geometry != "tiny" else None
    return result


def imap_breakdown(setup: Setup, transformer: Any, inputs: dict[str, torch.Tensor], layers: list[int]) -> dict:
    """Where the IMAP forward's extra work goes: one more IMAP forward with the concept stream and map read-out
    functions of ``vidseg.imap.processor`` timed (wall and CPU time, device synchronised around each call).

    ``ConceptStream.step`` holds all the work the stock forward does not do, except ``MapReadout.maps``; the
    other parts are inside it. Parts the processor no longer has are left out.
    """
    from vidseg.imap import processor

    parts = [
        ("concept stream + read-out", getattr(processor, "ConceptStream", None), "step"),
        ("read-out (add_layer)", getattr(processor, "MapReadout", None), "add_layer"),
        ("frame separation", processor, "frame_separation"),
        ("surrogate tokens", processor, "surrogate_tokens"),
        ("Gram columns", processor, "gramcol"),
        ("z-score", processor, "zscore_over_slots"),
        ("maps()", getattr(processor, "MapReadout", None), "maps"),
    ]
    totals: dict[str, dict[str, float]] = {}
    meter = Meter(setup.device)

    def timed(label: str, function: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            meter._sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                meter._sync()
                entry = totals.setdefault(label, {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0})
                entry["seconds"] += time.perf_counter() - start
                entry["cpu_seconds"] += time.process_time() - start_cpu
                entry["calls"] += 1
        return wrapper

    patched = [(label, owner, name, vars(owner)[name]) for label, owner, name in parts
               if owner is not None and name in vars(owner)]
    try:
        for label, owner, name, original in patched:
            setattr(owner, name, timed(label, original))
        cfg = setup.config
        with meter.measure("imap"):
            run_forward("imap", transformer, inputs, READOUT_T, layers, cfg.maps.top_k_heads, cfg.maps.concept_slots)
    finally:
        for _, owner, name, original in patched:
            setattr(owner, name, original)
    forward = meter.stages[-1]
    result: dict[str, Any] = {"forward_s": forward.seconds, "forward_cpu_s": forward.cpu_seconds, "parts": totals}
    extra = [totals[k] for k in ("concept stream + read-out", "maps()") if k in totals]
    for clock, total in (("wall", forward.seconds), ("cpu", forward.cpu_seconds)):
        key = "seconds" if clock == "wall" else "cpu_seconds"
        extra_s = sum(e[key] for e in extra)
        # The rest of the forward is the stock work: (stock + extra) / stock.
        result[f"estimated_ratio_{clock}"] = total / max(total - extra_s, 1e-9)
    return result


def _memory_ratios(result: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Peak ratio (the issue's criterion) and ratio of the increase above the pre-forward baseline (stricter)."""
    key, base = ("peak_cuda_mb", "baseline_cuda_mb") if device.type == "cuda" else ("peak_rss_mb", "baseline_rss_mb")
    stock, imap = result["stock"]["memory"], result["imap"]["memory"]
    return {
        "memory_kind": "CUDA max allocated" if device.type == "cuda" else "peak RSS",
        "memory_ratio": imap[key] / stock[key],
        "memory_increase_ratio": (imap[key] - imap[base]) / max(stock[key] - stock[base], 1e-9),
    }


# -- report -----------------------------------------------------------------------------------------------------


def stage_table(stages: list[Stage], cuda: bool) -> str:
    children = any(s.children_peak_rss_mb > 0 for s in stages)
    head = ["stage", "wall s", "CPU s", "peak RSS MB"] + (["workers RSS MB"] if children else []) + \
           (["peak CUDA MB"] if cuda else []) + ["notes"]
    rows = []
    for s in stages:
        row = [s.name, f"{s.seconds:.3f}", f"{s.cpu_seconds:.3f}", f"{s.peak_rss_mb:,.0f}"]
        row += [f"{s.children_peak_rss_mb:,.0f}"] if children else []
        row += [f"{s.peak_cuda_mb:,.0f}"] if cuda else []
        rows.append(row + [s.note])
    return _markdown(head, rows)


def overhead_table(result: dict[str, Any], cuda: bool) -> str:
    unit = "CUDA MB" if cuda else "RSS MB"
    key, base = ("peak_cuda_mb", "baseline_cuda_mb") if cuda else ("peak_rss_mb", "baseline_rss_mb")
    head = ["forward", "median wall s", "median CPU s", "runs wall s", "runs CPU s", f"peak {unit}",
            f"baseline {unit}", "increase"]
    rows = []
    for variant in ("stock", "imap"):
        r, m = result[variant], result[variant]["memory"]
        rows.append([variant, f"{r['median_s']:.3f}", f"{r['median_cpu_s']:.3f}", _floats(r["seconds"]),
                     _floats(r["cpu_seconds"]), f"{m[key]:,.0f}", f"{m[base]:,.0f}", f"{m[key] - m[base]:,.0f}"])
    verdict = {True: "within", False: "OVER", None: "tiny model: not judged against"}[result["within_limit"]]
    breakdown = result["imap_breakdown"]
    parts = "; ".join(f"{label} {p['seconds']:.3f} s wall / {p['cpu_seconds']:.3f} s CPU in {p['calls']} calls"
                      for label, p in breakdown["parts"].items())
    return (_markdown(head, rows) + "\n\n"
            f"IMAP / stock time: x{result['time_ratio_wall']:.3f} wall (pairs {_floats(result['time_ratios_wall'])}), "
            f"x{result['time_ratio_cpu']:.3f} CPU (pairs {_floats(result['time_ratios_cpu'])}); "
            f"{result['memory_kind']} x{result['memory_ratio']:.3f} (increase above baseline "
            f"x{result['memory_increase_ratio']:.3f}). Judged on {result['time_clock']} time: {verdict} the "
            f"x{OVERHEAD_LIMIT} limit. Map layers {_layer_span(result['layers_read'])} of {result['num_blocks']} "
            f"blocks, latents {result['latents']}.\n\n"
            f"Breakdown (one more IMAP forward, {breakdown['forward_s']:.2f} s wall / {breakdown['forward_cpu_s']:.2f} s "
            f"CPU): {parts}. Estimated ratio from it: x{breakdown['estimated_ratio_wall']:.3f} wall, "
            f"x{breakdown['estimated_ratio_cpu']:.3f} CPU.")


def _floats(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _layer_span(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0])
    return ",".join(map(str, layers))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--geometry", choices=("tiny", "cogvideox-2b", "cogvideox-5b"), default="tiny")
    parser.add_argument("--layers", type=int, help="transformer blocks kept (real geometries; CPU default 2)")
    parser.add_argument("--t5-layers", type=int, help="T5-XXL layers of 24 (real geometries; CPU default 2)")
    parser.add_argument("--frames", type=int, help="frames of the pixel stages (8k+1; CPU default 9 for real "
                                                   "geometries, else the preset's)")
    parser.add_argument("--size", help="HxW of the pixel stages (CPU default 128x192 for real geometries)")
    parser.add_argument("--steps", type=int, help="inversion steps timed (CPU default 1 for real geometries; "
                                                  "else all of the preset's)")
    parser.add_argument("--repeats", type=int, help="timed stock/IMAP pairs after the warm-up (tiny: 10; real "
                                                    "geometries: 3, on a CPU 2)")
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--video", help=f"video to decode (default {DEFAULT_VIDEO} if present, else generated)")
    parser.add_argument("--device", help="cuda | cpu (default cuda when present)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="bfloat16 | float32 (default bfloat16 on a GPU, float32 on a CPU)")
    parser.add_argument("--memory", choices=("subprocess", "in-process"),
                        help="where the stock/IMAP peak memory is measured (default: subprocess on a CPU)")
    parser.add_argument("--only", choices=("stages", "overhead"), help="run only the stages or only the overhead")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--measure-forward", choices=("stock", "imap"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # What a --memory subprocess needs to rebuild the same model and inputs.
    args.forwarded = list(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    setup = resolve_setup(args)
    with tempfile.TemporaryDirectory(prefix="vidseg-bench-") as tmp:
        workdir = Path(tmp)
        if args.measure_forward:
            print(json.dumps(measure_one_forward(setup, args.measure_forward, workdir)))
            return 0
        return run_bench(setup, args, workdir)


def run_bench(setup: Setup, args: argparse.Namespace, workdir: Path) -> int:
    cuda = setup.device.type == "cuda"
    report: dict[str, Any] = {
        "geometry": setup.geometry, "device": str(setup.device), "dtype": _dtype_name(setup.dtype),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average_start": os.getloadavg(),
        "settings": {"layers": setup.layers, "t5_layers": setup.t5_layers, "frames": setup.frames,
                     "size": list(setup.size), "steps": setup.steps, "repeats": setup.repeats,
                     "classes": setup.classes, "video": str(setup.video) if setup.video else "generated",
                     "memory": setup.memory},
    }
    if cuda:
        report["gpu"] = torch.cuda.get_device_name(setup.device)
    meter = Meter(setup.device)
    report["rss_peak_scope"] = meter.rss_peak_scope
    transformer = None
    if args.only != "overhead":
        _log("stages ...")
        kept = pipeline_stages(setup, meter, workdir)
        transformer = kept["transformer"]
        report["tokens"] = kept["tokens"]
        report["stages"] = [asdict(s) for s in meter.stages]
        scope = "" if meter.rss_peak_scope == "stage" else "; peak RSS over the process lifetime"
        print(f"\n## {setup.geometry}: stages ({report['device']}, {report['dtype']}{scope})\n")
        print(stage_table(meter.stages, cuda))
    if args.only != "stages":
        _log("stock vs IMAP forward ...")
        if transformer is None:
            tiny_dir = None
            if setup.geometry == "tiny":
                from vidseg.models.tiny import make_tiny_model

                tiny_dir = make_tiny_model(workdir / "tiny_model")
            transformer = build_transformer(setup, tiny_dir)
        report["overhead"] = compare_forwards(setup, args, transformer, workdir)
        print(f"\n## {setup.geometry}: stock vs IMAP forward ({len(transformer.transformer_blocks)} blocks)\n")
        print(overhead_table(report["overhead"], cuda))
    report["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
