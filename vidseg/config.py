"""Settings: nested dataclasses, loaded from ``configs/*.yaml`` and overridden from the CLI.

Precedence, lowest first: dataclass defaults (CogVideoX-2B), the preset YAML (``--preset``), a ``vidseg.yaml``
inside a local model folder (the tiny model carries one), a user YAML (``--config``), ``--set key=value``
overrides, then dedicated CLI options. YAML files hold only the values that differ from the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vidseg.errors import ConfigError, first_line
from vidseg.registry import (
    Choices, CALIBRATIONS, CONCEPT_SLOTS, CRF_MODES, EXPORT_FORMATS, ID_SPACES, INVERSIONS, MAP_KINDS, READERS, RESIZE_MODES,
    UPSAMPLERS,
)
from vidseg.video.read import parse_time
from vidseg.weights import model_location

logger = logging.getLogger(__name__)

def setting(default: Any, flag: str | None = None, help: str = "", choices: Choices | None = None) -> Any:
    """A settings field with, in one place, its default, the CLI flag and help text that set it (``flag``), and the
    registry of its valid values (``choices``, checked by ``VidsegConfig.validate``)."""
    metadata = {"flag": flag, "help": help, "choices": choices}
    return field(default=default, metadata=metadata)


def setting_fields(config: "VidsegConfig") -> dict[str, dataclasses.Field]:
    """Every setting by its dotted name (``maps.kind``), in declaration order."""
    return {f"{section.name}.{f.name}": f for section in dataclasses.fields(config)
            for f in dataclasses.fields(getattr(config, section.name))}


def get_setting(config: "VidsegConfig", name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(config, section), key)


def set_setting(config: "VidsegConfig", name: str, value: Any) -> None:
    section, key = name.split(".")
    setattr(getattr(config, section), key, value)


# Blocks whose maps are averaged for CogVideoX-2B (the official IMAP layer list, 0-based).
COGVIDEOX_2B_LAYERS = [4, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]


@dataclass
class VideoConfig:
    """How the input video is sampled and shaped for the model."""

    sample_fps: float = setting(8.0, "--sample-fps", "Frames per second fed to the model; 0 = every frame. Default: 8, "
                                                    "CogVideoX's rate.")
    num_frames: int = 49  # frames per model window; the VAE needs 8k+1
    height: int = 480  # model input size in pixels (multiple of 16)
    width: int = 720
    window_overlap: int = 8  # sampled frames shared by consecutive windows (blended)
    resize: str = setting("stretch", choices=RESIZE_MODES)  # how a frame of another aspect ratio fits height x width
    reader: str = setting("auto", choices=READERS)
    frame_folder_fps: float = 15.0  # frame rate of a folder of frames (VSPW frames are 15 fps)
    start: str | None = setting(None, "--start", "Segment from this time of the video: seconds (90, 12.5) or mm:ss "
                                                 "(1:30). Outputs are numbered from it. Default: the start.")
    end: str | None = setting(None, "--end", "Segment up to this time (seconds or mm:ss). Default: the end.")


@dataclass
class ModelConfig:
    """Which weights to load and where to run them."""

    source: str = setting("THUDM/CogVideoX-2b", "--model", "Hub id or local diffusers folder, or toy: the shipped "
                          "toy-world model. Default: the preset's, THUDM/CogVideoX-2b.")
    device: str | None = setting(None, "--device", "Where to run the model. Default: cuda when present, else cpu.")
    dtype: str | None = setting(None, "--dtype", "float32, bfloat16 or float16. Default: bfloat16 on GPU, float32 on "
                                                 "CPU.")
    offload: bool = setting(False, "--offload/--no-offload", "Keep weights on the CPU, moving blocks to the GPU as they "
                                                             "run (24 GB GPUs). Default: off.")
    vae_tiling: bool = True  # encode the video in spatial tiles to bound VAE memory


@dataclass
class InversionConfig:
    """How the clean latent is brought to the read-out timestep."""

    method: str = setting("ddim", "--inversion", f"{INVERSIONS.choices()}: ddim is deterministic inversion (DDIM for "
                          "v-prediction models, the flow ODE for flow models), renoise the official IMAP single "
                          "noising. Default: ddim.", INVERSIONS)
    num_steps: int = 50  # length of the scheduler's timestep grid
    readout_index: int = 30  # index into that grid (descending) of the read-out timestep: t = 399 for 2B
    seed: int = 42  # noise seed for renoise
    prompt: str | None = setting(None, "--prompt", "Caption of the video. Default: built from the class names.")


@dataclass
class MapsConfig:
    """Which attention maps are read out."""

    kind: str = setting("imap", "--map", f"{MAP_KINDS.choices()}: imap keeps the motion-selected heads, gramcol all "
                        "heads; cross_attention and concept_attention (CogVideoX only) are the paper's baselines. "
                        "Default: imap.", MAP_KINDS)
    layers: list[int] = field(default_factory=lambda: list(COGVIDEOX_2B_LAYERS))
    top_k_heads: int = 5  # heads kept per layer by the Calinski-Harabasz frame-separation score
    concept_slots: str = setting("compact", choices=CONCEPT_SLOTS)


@dataclass
class ProbsConfig:
    """Saliency maps to per-pixel class probabilities (index 0 = background); see ``vidseg.probs``."""

    # How each class map is put on a common scale before the softmax, independent of the number of classes:
    # class (divide each class map by its own RMS over the clip, keeping the sign: > 0 means the class beats the
    # null concept) | clip (one RMS over all classes) | otsu (per class, centre on its Otsu threshold) | none.
    # Defaults chosen by tools/refine_bench.py --calibration (GramCol-like maps of real frames, 1 to 10 classes).
    calibration: str = setting("class", choices=CALIBRATIONS)
    temperature: float = 0.25  # softmax temperature over the calibrated class logits (lower: more confident)
    background: float | None = 2.0  # background logit in calibrated units; null = no background class


@dataclass
class PresenceConfig:
    """Which asked-for classes are in the video; an absent class gets no pixel (see ``vidseg.presence``)."""

    threshold: float | None = setting(0.0, "--presence-threshold", "A class is kept in a model window where its "
                                      "presence score (its strongest tokens against the null concept, in units of "
                                      "the maps' RMS) exceeds this; fit one with vidseg calibrate. null: keep every "
                                      "class. Default: the preset's (0: the class beats the null concept).")
    peak_share: float = 0.02  # the share of a window's tokens, its strongest for the class, the score averages


@dataclass
class UpsampleConfig:
    """Low-resolution probabilities to full resolution, guided by each frame."""

    method: str = setting("guided", "--upsampler", f"{UPSAMPLERS.choices()}. Default: guided; anyup when "
                                                   "--anyup-checkpoint is given.", UPSAMPLERS)
    anyup_checkpoint: str | None = setting(None, "--anyup-checkpoint", "Path to anyup_paper.pth or "
                                                                       "anyup_multi_backbone.pth.")
    anyup_max_queries: int | None = None  # output pixels per AnyUp attention chunk; null: 16384 on CPU, 262144 on GPU
    guided_radius: float = 0.25  # guided-filter window radius in low-resolution cells (x16 upsampling: 4 px)
    guided_eps: float = 0.01  # guided-filter regulariser in (RGB/255)^2 units; larger follows colour edges less
    # Per frame, classes whose low-resolution probability never reaches this fraction of the pixel's top
    # probability are left out of upsampling and the CRF (long class lists cost only what occurs); 0 keeps all.
    class_keep_ratio: float = 0.5


@dataclass
class CrfConfig:
    """Dense CRF refinement of the upsampled probabilities (pydensecrf2); see ``vidseg.refine.crf``."""

    # null: run when pydensecrf is installed, else warn once; true: required; false: off
    enabled: bool | None = setting(None, "--crf/--no-crf", "Dense CRF refinement per frame. Default: on when "
                                                           "pydensecrf2 is installed (--crf makes it required).")
    mode: str = setting("2d", choices=CRF_MODES)
    # Defaults chosen by tools/refine_bench.py --sweep on real frames: a narrow appearance kernel and no smoothness
    # kernel. Image-paper settings (bilateral 80 / 13 / 10, gaussian 3 / 3) erase thin parts of people at this scale.
    iterations: int = 3  # mean-field iterations (5 gains 0.2 IoU points on the benchmark for 40% more time)
    gaussian_sxy: float = 3.0  # smoothness kernel width, pixels at 480 rows (scaled with the frame height)
    gaussian_compat: float = 0.0  # smoothness kernel weight; 0 = no smoothness kernel
    bilateral_sxy: float = 15.0  # appearance kernel width, pixels at 480 rows (scaled with the frame height)
    bilateral_srgb: float = 4.0  # appearance kernel colour width, RGB levels
    bilateral_compat: float = 3.0  # appearance kernel weight
    temporal_window: int = 4  # 3d: frames per CRF window
    temporal_overlap: int = 1  # 3d: frames shared by consecutive windows (their marginals are averaged)
    temporal_sdt: float = 1.0  # 3d: kernel width along time, frames
    max_pixels: int = 1280 * 720  # larger frames run the CRF on a downscaled copy (marginals scaled back up)


@dataclass
class ExportConfig:
    """What is written for each video."""

    format: str = setting("palette", "--format", f"{EXPORT_FORMATS.choices()}: palette PNGs, vspw single-channel PNGs, "
                          "coco RLE JSON, npz the soft saliency only. Default: palette.", EXPORT_FORMATS)
    overlay: bool = setting(True, "--overlay/--no-overlay", "Write overlay.mp4. Default: on.")
    heatmaps: bool = setting(True, "--export-heatmaps/--no-export-heatmaps", "Write saliency.mp4 (each class's "
                             "probability map over the frames) and preview.png. Default: on.")
    workers: int = setting(0, "--workers", "Processes for refinement; 0 = one per CPU core. Default: 0.")
    id_space: str = setting("contiguous", "--id-space", "contiguous (0..123, VSPW README mapping) or raw (1..124). "
                                                        "Default: contiguous.", ID_SPACES)


@dataclass
class LocalizeConfig:
    """Where and when each concept is present (``vidseg localize``): see ``vidseg.localize``."""

    # A frame's strength: the concept's probability against the background (probs.*) averaged over its most salient
    # share of tokens (at least one).
    peak_share: float = 0.02
    threshold: float = setting(0.5, "--threshold", "A concept is active in the frames where its strength (its peak "
                                                   "probability against the background, 0-1) exceeds this. "
                                                   "Default: 0.5.")
    min_active_s: float = setting(0.0, "--min-active", "Drop active runs shorter than this many seconds. Default: 0.")
    max_gap_s: float = setting(0.0, "--max-gap", "Fill inactive gaps shorter than this many seconds between active "
                                                 "runs. Default: 0.")


@dataclass
class VidsegConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    maps: MapsConfig = field(default_factory=MapsConfig)
    probs: ProbsConfig = field(default_factory=ProbsConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    upsample: UpsampleConfig = field(default_factory=UpsampleConfig)
    crf: CrfConfig = field(default_factory=CrfConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check values once, before anything is loaded. Raises ConfigError naming the field."""
        for name, spec in setting_fields(self).items():  # every choice against its registry
            if spec.metadata.get("choices") is not None:
                spec.metadata["choices"].check(get_setting(self, name), name)
        v, inv = self.video, self.inversion
        if v.num_frames < 5 or (v.num_frames - 1) % 4:  # the model's own rule is checked when it is opened
            raise ConfigError(f"video.num_frames is {v.num_frames}; the video VAEs need 4k+1 frames (CogVideoX: "
                              f"8k+1), e.g. 49")
        if v.height % 16 or v.width % 16 or v.height <= 0 or v.width <= 0:
            raise ConfigError(f"video size {v.height}x{v.width} must be positive multiples of 16, e.g. 480x720")
        if v.sample_fps < 0:
            raise ConfigError(f"video.sample_fps is {v.sample_fps}; use a positive rate, or 0 for every frame")
        if not 0 <= v.window_overlap < v.num_frames:
            raise ConfigError(f"video.window_overlap is {v.window_overlap}; it must be in [0, {v.num_frames})")
        if v.frame_folder_fps <= 0:
            raise ConfigError(f"video.frame_folder_fps is {v.frame_folder_fps}; give the frames' rate, e.g. 15")
        start, end = (None if t is None else parse_time(t, f"video.{name} (--{name})")
                      for name, t in (("start", v.start), ("end", v.end)))
        if start is not None and end is not None and end <= start:
            raise ConfigError(f"video.end (--end {v.end}) must come after video.start (--start {v.start})")
        if not 0 <= inv.readout_index < inv.num_steps:
            raise ConfigError(
                f"inversion.readout_index is {inv.readout_index}; it must be in [0, {inv.num_steps}) "
                f"(inversion.num_steps)"
            )
        # The map layers and motion heads depend on the model: Backbone.check_settings checks them.
        if self.probs.temperature <= 0:
            raise ConfigError(f"probs.temperature is {self.probs.temperature}; it must be positive")
        if not 0 < self.presence.peak_share <= 1:
            raise ConfigError(f"presence.peak_share is {self.presence.peak_share}; it must be in (0, 1]")
        up, crf = self.upsample, self.crf
        if up.guided_radius <= 0 or up.guided_eps <= 0:
            raise ConfigError(f"upsample.guided_radius ({up.guided_radius}) and guided_eps ({up.guided_eps}) "
                              f"must be positive")
        if not 0 <= up.class_keep_ratio <= 1:
            raise ConfigError(f"upsample.class_keep_ratio is {up.class_keep_ratio}; it must be in [0, 1]")
        if min(crf.gaussian_sxy, crf.bilateral_sxy, crf.bilateral_srgb, crf.temporal_sdt) <= 0 or \
                min(crf.gaussian_compat, crf.bilateral_compat) < 0:
            raise ConfigError("crf kernel widths (gaussian_sxy, bilateral_sxy, bilateral_srgb, temporal_sdt) must be "
                              "positive and the compat weights non-negative")
        if crf.iterations < 1 or crf.max_pixels < 1:
            raise ConfigError(f"crf.iterations ({crf.iterations}) and crf.max_pixels ({crf.max_pixels}) must be >= 1")
        if not 0 <= crf.temporal_overlap < crf.temporal_window:
            raise ConfigError(f"crf.temporal_overlap is {crf.temporal_overlap}; it must be in "
                              f"[0, {crf.temporal_window}) (crf.temporal_window)")
        loc = self.localize
        if not 0 < loc.peak_share <= 1:
            raise ConfigError(f"localize.peak_share is {loc.peak_share}; it must be in (0, 1]")
        if not 0 <= loc.threshold < 1:
            raise ConfigError(f"localize.threshold is {loc.threshold}; it must be in [0, 1), e.g. 0.5")
        if loc.min_active_s < 0 or loc.max_gap_s < 0:
            raise ConfigError(f"localize.min_active_s ({loc.min_active_s}) and max_gap_s ({loc.max_gap_s}) must be "
                              f">= 0 seconds")
        if self.upsample.method == "anyup" and not self.upsample.anyup_checkpoint:
            raise ConfigError("upsample.method is anyup but no checkpoint was given; pass --anyup-checkpoint PATH")


def preset_names() -> list[str]:
    """Names of the model presets shipped in ``configs/`` (``vspw`` holds class names, not a preset)."""
    return sorted(p.name[:-5] for p in resources.files("vidseg.configs").iterdir()
                  if p.name.endswith(".yaml") and p.name != "vspw.yaml")


def read_yaml(source: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a path, or from a shipped config when given a bare name like ``cogvideox-2b``."""
    path = Path(source)
    shipped = resources.files("vidseg.configs") / f"{source}.yaml"
    if not path.exists() and (shipped.is_file() or not path.suffix):  # a bare name; "wan2.1-1.3b" has a dot
        if not shipped.is_file():
            raise ConfigError(f"no preset named {source!r}; choose one of: {', '.join(preset_names())}")
        text = shipped.read_text()
    else:
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(source)!r} is not valid YAML: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(source)!r} must be a mapping of sections (video:, model:, ...)")
    return data


# Settings renamed in 0.2 (their old names stuttered): old (section, key) -> new key.
RENAMED_KEYS = {("model", "model"): "source", ("maps", "map"): "kind"}


def merge(config: VidsegConfig, data: dict[str, Any], source: str = "config") -> VidsegConfig:
    """Apply a nested mapping ``{section: {field: value}}`` onto ``config`` in place, checking names and types."""
    sections = {f.name: f for f in dataclasses.fields(config)}
    for section_name, values in data.items():
        if section_name not in sections:
            raise ConfigError(f"{source}: unknown section {section_name!r}{_did_you_mean(section_name, sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping of field: value")
        section = getattr(config, section_name)
        hints = typing.get_type_hints(type(section))
        fields = {f.name for f in dataclasses.fields(section)}
        for key, value in values.items():
            if (section_name, key) in RENAMED_KEYS:
                new = RENAMED_KEYS[(section_name, key)]
                logger.warning("%s: %s.%s is now %s.%s; the old name still works but will go", source, section_name,
                               key, section_name, new)
                key = new
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown key {section_name}.{key}{_did_you_mean(key, fields, section_name + '.')}"
                )
            setattr(section, key, _coerce(f"{section_name}.{key}", value, hints[key]))
    return config


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["maps.layers=[10,12]", "crf.enabled=false"]`` to a nested mapping (values parsed as YAML)."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. maps.top_k_heads=3")
        section, _, name = key.strip().partition(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        data.setdefault(section, {})[name] = value
    return data


def preset_for_model(model: str | Path | None) -> str:
    """The preset that fits ``model``, as its family says (``Backbone.hub_presets`` by hub id, else
    ``Backbone.preset_for`` on a local folder's transformer config); the default model's when nothing tells."""
    from vidseg.models.hub import backbone_class, backbone_classes

    default = VidsegConfig().model.source
    model = model_location(default if model is None else model)
    for backbone in backbone_classes():
        if str(model) in backbone.hub_presets:
            return backbone.hub_presets[str(model)]
    try:
        transformer = json.loads((Path(model) / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return preset_for_model(default)
    backbone = backbone_class(transformer.get("_class_name", ""))
    return backbone.preset_for(transformer) if backbone is not None else preset_for_model(default)


def model_folder_config(model: str | Path | None) -> Path | None:
    """The ``vidseg.yaml`` a local model folder brings (the tiny models' geometry, say), or None."""
    if model is None:
        return None
    path = Path(model_location(model)) / "vidseg.yaml"
    return path if path.is_file() else None


def load_config(
    preset: str | Path | None = None,
    *,
    model: str | Path | None = None,
    model_dir_config: str | Path | None = None,
    user_config: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> VidsegConfig:
    """Build a config from the layers described in the module docstring (validation is left to the caller,
    after CLI options are applied).

    ``model`` (hub id, local folder or ``toy``) loads the settings that model needs, as the CLI's ``--model``
    does: its preset (unless ``preset`` is given), its folder's ``vidseg.yaml`` (unless ``model_dir_config`` is
    given) and ``model.source``. ``preset=None`` otherwise picks the preset that fits the model folder's config
    (its ``vidseg.yaml`` names the model) or the default model. ``overrides`` are ``["section.key=value"]``
    strings or a mapping, nested (``{"maps": {"kind": "gramcol"}}``) or dotted (``{"maps.kind": "gramcol"}``).
    """
    if model is not None:
        model_dir_config = model_dir_config or model_folder_config(model)
        preset = preset or preset_for_model(model)
    if preset is None:
        section = read_yaml(model_dir_config).get("model", {}) if model_dir_config else {}
        named = section.get("source", section.get("model"))
        preset = preset_for_model(named or (Path(model_dir_config).parent if model_dir_config else None))
    config = VidsegConfig()
    merge(config, read_yaml(preset), f"preset {preset}")
    for extra in (model_dir_config, user_config):
        if extra is not None:
            merge(config, read_yaml(extra), str(extra))
    if model is not None:
        config.model.source = str(model)
    if overrides:
        data = parse_overrides(overrides) if isinstance(overrides, list) else nest_overrides(overrides)
        merge(config, data, "--set")
    return config


def nest_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"maps.kind": "gramcol", "crf": {"enabled": False}}`` -> ``{"maps": {"kind": "gramcol"}, "crf": {...}}``."""
    data: dict[str, Any] = {}
    for key, value in overrides.items():
        section, dot, name = str(key).partition(".")
        if dot:
            data.setdefault(section, {})[name] = value
        elif isinstance(value, dict):
            data.setdefault(section, {}).update(value)
        else:
            raise ConfigError(f"override {key!r} must be a section.key name (e.g. maps.kind) or a section mapping")
    return data


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check a YAML value against a dataclass field type; ints are accepted for floats."""
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{name} cannot be empty")
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = typing.get_origin(hint) or hint
    if target in (typing.Union, types.UnionType):
        target = typing.get_origin(args[0]) or args[0]
    if target is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, e.g. [4, 6, 7], not {value!r}")
        item_type = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        if item_type is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{name} must be a list of integers, not {value!r}")
        return list(value)
    if target is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if target is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        return float(value)
    if target is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, not {value!r}")
        return value
    if target is str:
        return str(value)
    return value


def _did_you_mean(name: str, options: Any, prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""
