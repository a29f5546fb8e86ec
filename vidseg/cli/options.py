"""Options shared by ``predict`` and ``label``, and how they override the loaded config."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from vidseg.registry import INVERSIONS, MAP_KINDS, UPSAMPLERS
from vidseg.config import VidsegConfig, load_config, model_folder_config, preset_for_model

ModelOpt = typer.Option(None, "--model", help="Hub id or local diffusers folder (CogVideoX or Wan2.1), or toy: the shipped toy-world model. Default: the preset's, THUDM/CogVideoX-2b.")
PresetOpt = typer.Option(None, "--preset", help="Model preset from configs/: cogvideox-2b, cogvideox-5b, wan2.1-1.3b, wan2.1-14b. Default: the one that fits --model.")
ConfigOpt = typer.Option(None, "--config", help="YAML file overriding the preset (sections video:, maps:, crf:, ...).")
SetOpt = typer.Option(None, "--set", help="Override one setting, e.g. --set maps.top_k_heads=3 (repeatable).")
DeviceOpt = typer.Option(None, "--device", help="Where to run the model. Default: cuda when present, else cpu.")
DtypeOpt = typer.Option(None, "--dtype", help="float32, bfloat16 or float16. Default: bfloat16 on GPU, float32 on CPU.")
OffloadOpt = typer.Option(None, "--offload/--no-offload", help="Keep weights on the CPU, moving blocks to the GPU as they run (24 GB GPUs). Default: off.")
SampleFpsOpt = typer.Option(None, "--sample-fps", help="Frames per second fed to the model; 0 = every frame. Default: 8, CogVideoX's rate.")
InversionOpt = typer.Option(None, "--inversion", help=f"{INVERSIONS.choices()}: ddim is deterministic inversion (DDIM for CogVideoX, the flow ODE for Wan), renoise the official IMAP single noising. Default: ddim.")
PromptOpt = typer.Option(None, "--prompt", help="Caption of the video. Default: built from the class names.")
MapOpt = typer.Option(None, "--map", help=f"{MAP_KINDS.choices()}: imap keeps the motion-selected heads, gramcol all heads, cross_attention (Wan) the plain attention weights. Default: imap.")
UpsamplerOpt = typer.Option(None, "--upsampler", help=f"{UPSAMPLERS.choices()}. Default: guided; anyup when --anyup-checkpoint is given.")
AnyUpOpt = typer.Option(None, "--anyup-checkpoint", help="Path to anyup_paper.pth or anyup_multi_backbone.pth.")
CrfOpt = typer.Option(None, "--crf/--no-crf", help="Dense CRF refinement per frame. Default: on when pydensecrf2 is installed (--crf makes it required).")
WorkersOpt = typer.Option(None, "--workers", help="Processes for refinement; 0 = one per CPU core. Default: 0.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress display.")

# The model and pipeline options every segmenting command takes, declared once: (parameter, type, option).
MODEL_OPTIONS = (
    ("model", Optional[str], ModelOpt),
    ("preset", Optional[str], PresetOpt),
    ("config_path", Optional[Path], ConfigOpt),
    ("overrides", Optional[list[str]], SetOpt),
    ("device", Optional[str], DeviceOpt),
    ("dtype", Optional[str], DtypeOpt),
    ("offload", Optional[bool], OffloadOpt),
    ("sample_fps", Optional[float], SampleFpsOpt),
    ("inversion", Optional[str], InversionOpt),
    ("prompt", Optional[str], PromptOpt),
    ("map_type", Optional[str], MapOpt),
    ("upsampler", Optional[str], UpsamplerOpt),
    ("anyup_checkpoint", Optional[Path], AnyUpOpt),
    ("crf", Optional[bool], CrfOpt),
    ("workers", Optional[int], WorkersOpt),
)


def with_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the ``MODEL_OPTIONS``: typer sees them in its signature, and the command receives them as
    one dict, ``settings``, for ``build_config(**settings, ...)``."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)
              for name, hint, option in MODEL_OPTIONS]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = {name: kwargs.pop(name) for name, _, _ in MODEL_OPTIONS}
        return command(*args, settings=settings, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "settings"},
                               **{name: hint for name, hint, _ in MODEL_OPTIONS}}
    return wrapper
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks for errors.")


def build_config(
    *,
    preset: Optional[str] = None,
    model: Optional[str] = None,
    config_path: Optional[Path] = None,
    overrides: Optional[list[str]] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    offload: Optional[bool] = None,
    sample_fps: Optional[float] = None,
    inversion: Optional[str] = None,
    prompt: Optional[str] = None,
    map_type: Optional[str] = None,
    upsampler: Optional[str] = None,
    anyup_checkpoint: Optional[Path] = None,
    crf: Optional[bool] = None,
    workers: Optional[int] = None,
    export_format: Optional[str] = None,
    overlay: Optional[bool] = None,
    heatmaps: Optional[bool] = None,
    id_space: Optional[str] = None,
) -> VidsegConfig:
    """Preset → model folder's vidseg.yaml → --config → --set → dedicated options; validated once."""
    cfg = load_config(preset or preset_for_model(model), model_dir_config=model_folder_config(model),
                      user_config=config_path, overrides=overrides)
    options = {
        ("model", "source"): model,
        ("model", "device"): device,
        ("model", "dtype"): dtype,
        ("model", "offload"): offload,
        ("video", "sample_fps"): sample_fps,
        ("inversion", "method"): inversion,
        ("inversion", "prompt"): prompt,
        ("maps", "kind"): map_type,
        ("upsample", "method"): upsampler,
        ("upsample", "anyup_checkpoint"): str(anyup_checkpoint) if anyup_checkpoint else None,
        ("export", "workers"): workers,
        ("export", "format"): export_format,
        ("export", "overlay"): overlay,
        ("export", "heatmaps"): heatmaps,
        ("export", "id_space"): id_space,
    }
    for (section, key), value in options.items():
        if value is not None:
            setattr(getattr(cfg, section), key, value)
    if anyup_checkpoint and upsampler is None:
        cfg.upsample.method = "anyup"
    if crf is not None:
        cfg.crf.enabled = crf
    cfg.validate()
    return cfg
