"""Options shared by the segmenting commands, made from the settings' own declarations (``vidseg.config.setting``:
flag and help text live beside the YAML key), and how they override the loaded config."""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from vidseg.config import VidsegConfig, load_config, set_setting, setting_fields

PresetOpt = typer.Option(None, "--preset", help="Model preset from configs/ (the model families' published "
                                                "checkpoints, e.g. cogvideox-2b, wan2.1-1.3b). Default: the one that "
                                                "fits --model.")
ConfigOpt = typer.Option(None, "--config", help="YAML file overriding the preset (sections video:, maps:, crf:, ...).")
SetOpt = typer.Option(None, "--set", help="Override one setting, e.g. --set maps.top_k_heads=3 (repeatable).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress display.")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks for errors.")

# The settings every segmenting command takes as options, by their YAML names; per-command ones (export.format,
# export.overlay, ...) are declared by the command with ``setting_option``.
MODEL_SETTINGS = ("model.source", "model.device", "model.dtype", "model.offload", "video.sample_fps",
                  "inversion.method", "inversion.prompt", "maps.kind", "presence.threshold", "upsample.method",
                  "upsample.anyup_checkpoint", "crf.enabled", "export.workers")
# Options that choose where settings come from rather than set one: (parameter, type, option).
_SOURCE_OPTIONS = (("preset", Optional[str], PresetOpt), ("config_path", Optional[Path], ConfigOpt),
                   ("overrides", Optional[list[str]], SetOpt))
_FIELDS = setting_fields(VidsegConfig())


def parameter_name(setting: str) -> str:
    """The command parameter that carries a setting: ``maps.kind`` -> ``maps_kind``."""
    return setting.replace(".", "_")


def setting_option(setting: str, default: Any = None, help: str | None = None) -> Any:
    """The typer option of a setting: its declared flag and help (``help`` replaces it for one command)."""
    spec = _FIELDS[setting]
    return typer.Option(default, *spec.metadata["flag"].split(" "), help=help or spec.metadata["help"])


def _option_type(setting: str) -> Any:
    section, key = setting.split(".")
    hint = typing.get_type_hints(type(getattr(VidsegConfig(), section)))[key]
    base = next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
    return Optional[base]


def with_model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the ``MODEL_SETTINGS`` options and the source options: typer sees them in its signature, and
    the command receives them as one dict, ``settings``, for ``build_config(settings, ...)``."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    declared = [(parameter_name(s), _option_type(s), setting_option(s)) for s in MODEL_SETTINGS]
    options = [declared[0], *_SOURCE_OPTIONS, *declared[1:]]  # --model first, then where settings come from
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)
              for name, hint, option in options]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = {name: kwargs.pop(name) for name, _, _ in options}
        return command(*args, settings=settings, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "settings"},
                               **{name: hint for name, hint, _ in options}}
    return wrapper


def build_config(settings: dict[str, Any], extra: dict[str, Any] | None = None) -> VidsegConfig:
    """Preset → model folder's vidseg.yaml → --config → --set → dedicated options; validated once.

    ``settings`` is what ``with_model_options`` collected; ``extra`` holds a command's own settings by YAML name
    (``{"export.format": ...}``). Options left at None keep the value the layers below gave.
    """
    model = settings["model_source"]
    cfg = load_config(settings["preset"], model=model, user_config=settings["config_path"],
                      overrides=settings["overrides"])
    values = {name: settings[parameter_name(name)] for name in MODEL_SETTINGS} | (extra or {})
    for name, value in values.items():
        if value is not None:
            set_setting(cfg, name, value)
    if values["upsample.anyup_checkpoint"] and values["upsample.method"] is None:
        cfg.upsample.method = "anyup"  # a checkpoint alone means "use it"
    cfg.validate()
    return cfg
