"""Load a video diffusion transformer (hub id or local diffusers folder) part by part, with the
text encoder loaded only while needed; the ``Backbone`` base and the registry of backbone families.

Memory plan: ``load_model`` reads configs and the scheduler only and checks that the weights are there. The text
encoder (T5 / umT5) is loaded by the first ``encode_text`` call, and ``release_text_encoder`` frees it. The
transformer and the VAE are loaded and moved to the device on first access of ``model.transformer`` /
``model.vae``. So encoding all texts, releasing the encoder, then running the model never holds the text encoder
(4.8 B parameters for the real models) and the transformer at the same time.

The text encoder runs in bfloat16 (the dtype it is distributed and used in) except when float32 is asked for on a
GPU; on a CPU this halves its 19 GB float32 footprint. It never runs in float16, where T5 overflows.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError, first_line
from vidseg.registry import BACKBONES
from vidseg.weights import shipped_model_folder

logger = logging.getLogger(__name__)

SUBFOLDERS = ("transformer", "vae", "scheduler", "tokenizer", "text_encoder")
# Each class name is encoded on its own in a sequence of this many tokens; only its first token is kept.
CONCEPT_MAX_TOKENS = 16
HUB_TIMEOUT_S = 3.0
_DTYPES = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HINT = ("pass --model PATH to a local CogVideoX or Wan2.1 diffusers folder, or --model toy (shipped) with "
         "`vidseg make-toy-clip` clips to try offline")


class Backbone:
    """A video diffusion transformer checkpoint, loaded part by part: the base of every backbone (the seam the
    pipeline composes; ``vidseg.pipeline.VideoSegmenter.window_saliency`` calls only what is listed here).

    A backbone provides: ``encode_text(prompt, classes)`` -> ``(prompt_embeds, concepts)``; ``release_text_encoder``;
    ``encode_video(pixels)`` -> clean latents in its transformer's layout; ``noise_to_readout(latents,
    prompt_embeds, inversion)`` -> ``(noisy, timestep)``; ``read_maps(noisy, timestep, prompt_embeds, concepts,
    maps)`` -> ``{map kind: [C, F, h, w]}``; ``check_settings(config, classes)``, which checks everything that can
    contradict the model from its config files alone; and ``map_kinds``. Subclasses set the class names below.

    Attributes:
        source: what was asked for (hub id or path).
        folder: the local diffusers folder the weights come from.
        device: where the model runs (the execution device with ``offload``).
        dtype: transformer and VAE dtype; ``encode_text`` returns embeddings in it.
        scheduler: the checkpoint's scheduler.
        preset_path: the folder's ``vidseg.yaml`` (settings shipped with the model, e.g. the tiny model's), or None.
        transformer_config, vae_config: the config.json files as dicts (available without loading the weights).
    """

    family = ""
    display_name = ""  # in messages: "CogVideoX"
    transformer_class = ""
    vae_class = ""
    text_encoder_class = ""
    map_kinds: tuple[str, ...] = ()
    frame_step = 4  # the VAE takes frame_step * k + 1 frames
    example_size = "480x720"  # a size that fits, for messages
    # What each inversion method is called for this family (progress lines).
    inversion_labels = {"ddim": "DDIM inversion", "renoise": "renoise"}

    def __init__(self, source: str, folder: Path, *, device: torch.device, dtype: torch.dtype, offload: bool,
                 vae_tiling: bool, scheduler: Any, transformer_config: dict[str, Any], vae_config: dict[str, Any]):
        self.source = source
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.vae_tiling = vae_tiling
        self.scheduler = scheduler
        self.transformer_config = transformer_config
        self.vae_config = vae_config
        preset = folder / "vidseg.yaml"
        self.preset_path: Path | None = preset if preset.is_file() else None
        self.text_dtype = torch.float32 if dtype == torch.float32 and device.type != "cpu" else torch.bfloat16
        self._transformer: Any = None
        self._vae: Any = None
        self._tokenizer: Any = None
        self._text_encoder: Any = None
        self._text_encoder_factory: Callable[[], Any] | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, device={self.device}, dtype={self.dtype}, "
                f"offload={self.offload})")

    @classmethod
    def from_components(cls, source: str, *, transformer: Any, vae: Any, text_encoder: Callable[[], Any],
                        tokenizer: Any, scheduler: Any, device: torch.device, dtype: torch.dtype) -> "Backbone":
        """A backbone over modules already in memory (e.g. ``vidseg.models.geometry.stand_in_model``'s random
        real-shape parts) instead of a folder; it runs exactly like a loaded one. ``text_encoder`` builds the
        encoder, which is then freed and rebuilt like a loaded one."""
        model = cls(source, Path(source), device=device, dtype=dtype, offload=False, vae_tiling=True,
                    scheduler=scheduler, transformer_config=dict(transformer.config), vae_config=dict(vae.config))
        model._transformer, model._vae = transformer.eval(), vae.eval()
        model._text_encoder_factory, model._tokenizer = text_encoder, tokenizer
        return model

    @classmethod
    def check_scheduler(cls, scheduler: Any, model: str) -> None:
        """Raise ``ModelLoadError`` when ``scheduler`` is not one this backbone can invert with."""

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent cell along each side (8 for the real VAEs)."""
        raise NotImplementedError

    @property
    def patch_size(self) -> int:
        """Latent cells per token along each side."""
        patch = self.transformer_config.get("patch_size", 2)
        return patch[-1] if isinstance(patch, (list, tuple)) else patch

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """Settings that contradict the checkpoint, from its config files alone (no weights loaded): the map kind,
        map layers and motion heads, the frame count and the frame size. Families add their own checks."""
        from vidseg.imap.heads import check_layers_and_heads

        t, v, maps = self.transformer_config, config.video, config.maps
        if maps.kind not in self.map_kinds:
            raise ConfigError(f"maps.kind is {maps.kind!r}; {self.display_name} gives {', '.join(self.map_kinds)}")
        check_layers_and_heads(maps.layers, maps.top_k_heads, num_blocks=t["num_layers"],
                               num_heads=t["num_attention_heads"])
        step = self.frame_step
        if v.num_frames < step + 1 or (v.num_frames - 1) % step:
            raise ConfigError(f"video.num_frames is {v.num_frames}; the {self.display_name} VAE needs {step}k+1 "
                              f"frames, e.g. 49")
        multiple = self.spatial_compression * self.patch_size
        if v.height % multiple or v.width % multiple:
            raise ConfigError(f"video size {v.height}x{v.width}: {self.source} needs multiples of {multiple} "
                              f"(VAE and patches), e.g. {self.example_size}")

    def inversion_functions(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """This family's ``(invert, renoise)``, with the signatures of ``vidseg.inversion.invert_video`` and
        ``renoise_video``."""
        raise NotImplementedError

    @torch.no_grad()
    def noise_to_readout(
        self, latents: torch.Tensor, prompt_embeds: torch.Tensor, inversion: Any, *, on_step: Any = None
    ) -> tuple[torch.Tensor, float]:
        """Bring clean latents to the read-out point: deterministic inversion (``method: ddim``) or the official
        single noising (``renoise``). ``inversion`` is a ``vidseg.config.InversionConfig``; ``on_step(i, n)`` is
        called after each inversion step. Returns the noisy latents and the transformer's read-out timestep."""
        invert, renoise = self.inversion_functions()
        if inversion.method == "ddim":
            return invert(self.transformer, self.scheduler, latents, prompt_embeds.to(self.device, self.dtype),
                          num_steps=inversion.num_steps, readout_index=inversion.readout_index, on_step=on_step)
        return renoise(self.scheduler, latents, num_steps=inversion.num_steps,
                       readout_index=inversion.readout_index, seed=inversion.seed)

    @property
    def transformer(self) -> Any:
        """The transformer in ``dtype`` on ``device`` (weights on the CPU with ``offload``)."""
        if self._transformer is None:
            import diffusers

            loader = getattr(diffusers, self.transformer_class).from_pretrained
            transformer = self._load("transformer", loader, dtype=self.dtype)
            self._transformer = self._place(transformer.eval(), "block_level")
        return self._transformer

    @property
    def vae(self) -> Any:
        """The VAE in ``dtype`` on ``device``, with slicing (and tiling when configured)."""
        if self._vae is None:
            import diffusers

            vae = self._load("vae", getattr(diffusers, self.vae_class).from_pretrained, dtype=self.dtype)
            vae.enable_slicing()
            if self.vae_tiling:
                vae.enable_tiling()
            self._vae = vae.eval().to(self.device)
        return self._vae

    @property
    def text_encoder_loaded(self) -> bool:
        return self._text_encoder is not None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (small; loading it loads no weights)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = self._load("tokenizer", AutoTokenizer.from_pretrained)
        return self._tokenizer

    def release_text_encoder(self) -> None:
        """Free the text encoder (host and GPU memory). ``encode_text`` loads it again if called later."""
        if self._text_encoder is None:
            return
        self._text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.debug("released the text encoder of %s", self.source)

    def _load_text_encoder(self) -> tuple[Any, Any]:
        if self._text_encoder is None and self._text_encoder_factory is not None:
            self._text_encoder = self._text_encoder_factory().eval()
        elif self._text_encoder is None:
            import transformers

            loader = getattr(transformers, self.text_encoder_class).from_pretrained
            encoder = self._load("text_encoder", loader, dtype=self.text_dtype)
            self._text_encoder = self._place(encoder.eval(), "leaf_level")
        return self.tokenizer, self._text_encoder

    def _load(self, subfolder: str, loader: Any, **kwargs: Any) -> Any:
        try:
            with quiet_progress_bars():
                return loader(str(self.folder), subfolder=subfolder, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot load the {subfolder} of {self.source}: {first_line(exc)}; "
                                 f"re-download the model or {_HINT}") from None

    def _place(self, module: Any, offload_type: str) -> Any:
        """Move to the device, or with ``offload`` on a GPU keep weights on the CPU and move each block (or, for the
        text encoder, each layer) to the GPU while it runs."""
        if not (self.offload and self.device.type == "cuda"):
            return module.to(self.device)
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(module, onload_device=self.device, offload_type=offload_type,
                               num_blocks_per_group=1 if offload_type == "block_level" else None, use_stream=True)
        return module


def backbone_class(transformer_class: str) -> type[Backbone] | None:
    """The backbone implementation for a diffusers transformer class name, or None when vidseg has none."""
    return BACKBONES.load(transformer_class) if transformer_class in BACKBONES.entries else None


def load_model(
    model: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    offload: bool = False,
    vae_tiling: bool = True,
) -> Backbone:
    """Open a checkpoint (CogVideoX or Wan2.1) from a local diffusers folder or a hub id.

    A hub id is looked up in the local cache first; the network is tried only when the hub answers within
    ``HUB_TIMEOUT_S`` seconds, so an offline machine fails at once. Weights load lazily (see the module docstring).

    Args:
        model: local folder with ``transformer/ vae/ scheduler/ tokenizer/ text_encoder/``, or a hub id such as
            ``THUDM/CogVideoX-2b``.
        device: ``cuda``, ``cuda:1``, ``cpu``...; default cuda when available, else cpu.
        dtype: ``bfloat16`` / ``float16`` / ``float32``; default bfloat16 on a GPU, float32 on a CPU.
        offload: keep transformer (and T5) weights on the CPU and move each block to the GPU as it runs; a no-op
            on a CPU.
        vae_tiling: encode frames in spatial tiles to bound VAE memory.

    Raises:
        ModelLoadError: weights missing (offline hub id, wrong path, incomplete folder) or a model family vidseg
            does not read.
        ConfigError: unknown dtype or unavailable device.
    """
    torch_device = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, torch_device)
    if offload and torch_device.type != "cuda":
        logger.info("offload only applies on a CUDA device; running everything on %s", torch_device)
    folder = _resolve_folder(model)
    transformer_config = _read_json(folder / "transformer" / "config.json", model)
    name = transformer_config.get("_class_name", "")
    backbone = backbone_class(name)
    if backbone is None:
        raise ModelLoadError(f"{model} is not a CogVideoX model nor a Wan2.1 one (its transformer is {name!r}); "
                             f"{_HINT}")
    scheduler = _load_scheduler(folder, model)
    backbone.check_scheduler(scheduler, model)
    return backbone(model, folder, device=torch_device, dtype=torch_dtype, offload=offload, vae_tiling=vae_tiling,
                    scheduler=scheduler, transformer_config=transformer_config,
                    vae_config=_read_json(folder / "vae" / "config.json", model))


def t5_embeddings(
    tokenizer: Any, encoder: Any, prompt: str, classes: Sequence[str], *, text_len: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 embeddings of a prompt and of each class name, as CogVideoX reads them (method.md §5.1).

    The prompt is padded / truncated to ``text_len`` tokens (the transformer's ``max_text_seq_length``, 226 for
    the real models), as the CogVideoX pipeline does. Each class name is tokenised and encoded on its own
    (``CONCEPT_MAX_TOKENS`` tokens) and only the embedding of its first token is kept.

    Returns:
        ``prompt_embeds [1, text_len, text_dim]`` and ``concept_embeds [concepts, text_dim]`` on ``device``
        (default: where the encoder's weights are; pass the execution device for an offloaded encoder).
    """
    device = device or next(encoder.parameters()).device
    full_len = len(tokenizer(prompt, add_special_tokens=True).input_ids)
    if full_len > text_len:
        logger.warning("the prompt has %d tokens; only the first %d are used", full_len, text_len)
    ids = tokenizer(prompt, padding="max_length", max_length=text_len, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids
    prompt_embeds = encoder(ids.to(device))[0]  # [1, text_len, text_dim]
    if classes:
        ids = tokenizer(list(classes), padding="max_length", max_length=CONCEPT_MAX_TOKENS, truncation=True,
                        add_special_tokens=True, return_tensors="pt").input_ids
        concept_embeds = encoder(ids.to(device))[0][:, 0]  # first token of each: [concepts, text_dim]
    else:
        concept_embeds = prompt_embeds.new_zeros(0, prompt_embeds.shape[-1])
    return prompt_embeds, concept_embeds


def default_prompt(classes: Sequence[str]) -> str:
    """A plain caption naming the classes: ``["person", "dog"]`` -> ``"A video of a person and a dog."``.

    Underscores become spaces and "an" is used before a vowel; three or more names are joined as "a, b and c".
    """
    names = [c.replace("_", " ").strip() for c in classes if c.strip()]
    if not names:
        return "A video."
    phrases = [f"{'an' if n[0].lower() in 'aeiou' else 'a'} {n}" for n in names]
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"A video of {body}."


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' and diffusers' per-file loading / saving bars (the CLI draws its own progress);
    restores their previous state."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in states:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in states:
            if enabled:
                lib.enable_progress_bar()


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; use cuda, cuda:0 or cpu") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available (torch sees no CUDA GPU); use --device cpu")
    return torch_device


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype.lower() not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; choose bfloat16, float16 or float32")
    return _DTYPES[dtype.lower()]


def _missing_parts(folder: Path) -> list[str]:
    """Subfolders (or their weights / configs) that a CogVideoX diffusers folder lacks."""
    missing = []
    for name in SUBFOLDERS:
        sub = folder / name
        if not sub.is_dir():
            missing.append(f"{name}/")
        elif name in ("transformer", "vae", "text_encoder"):
            if not (sub / "config.json").is_file() or not any(p.suffix in _WEIGHT_SUFFIXES for p in sub.iterdir()):
                missing.append(f"{name}/ weights")
        elif name == "scheduler" and not (sub / "scheduler_config.json").is_file():
            missing.append("scheduler/scheduler_config.json")
        elif name == "tokenizer" and not any((sub / f).is_file() for f in ("tokenizer.json", "spiece.model")):
            missing.append("tokenizer/ files")
    return missing


def _resolve_folder(model: str) -> Path:
    """The local folder holding ``model``: a shipped model's package folder, the path itself, a cached hub
    snapshot, or a fresh download."""
    shipped = shipped_model_folder(model)
    if shipped is not None:
        if _missing_parts(shipped):
            raise ModelLoadError(f"the shipped model {model} is missing from this install ({shipped}); reinstall "
                                 f"vidseg from a full source checkout")
        return shipped
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model {model} is a file, not a diffusers folder; {_HINT}")
        missing = _missing_parts(path)
        if missing:
            raise ModelLoadError(f"model folder {model} lacks {', '.join(missing)}; {_HINT}")
        return path
    if not _REPO_ID.match(model):
        raise ModelLoadError(f"model {model} is neither a local folder nor a hub id like THUDM/CogVideoX-2b; {_HINT}")

    from huggingface_hub import constants, snapshot_download

    patterns = [f"{name}/*" for name in SUBFOLDERS] + ["model_index.json", "vidseg.yaml"]
    try:
        cached = Path(snapshot_download(model, allow_patterns=patterns, local_files_only=True))
        if not _missing_parts(cached):
            return cached
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        pass
    if constants.HF_HUB_OFFLINE or not _hub_reachable(constants.ENDPOINT):
        raise ModelLoadError(f"model {model} is not a local folder, not in the Hugging Face cache, and the hub "
                             f"cannot be reached; {_HINT}")
    logger.info("downloading %s from the Hugging Face hub", model)
    try:
        folder = Path(snapshot_download(model, allow_patterns=patterns))
    except Exception as exc:  # hub errors come in many classes (HTTP, repository, revision, disk)
        raise ModelLoadError(f"cannot download {model}: {first_line(exc)}; {_HINT}") from None
    missing = _missing_parts(folder)
    if missing:
        raise ModelLoadError(f"hub model {model} lacks {', '.join(missing)}; is it a CogVideoX diffusers repository? "
                             f"{_HINT}")
    return folder


def _hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub opens within ``HUB_TIMEOUT_S`` (DNS included, so it runs in a thread)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    return bool(result and result[0])


def _read_json(path: Path, model: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path.name} of {model}: {first_line(exc)}; {_HINT}") from None


def _load_scheduler(folder: Path, model: str) -> Any:
    import diffusers

    config = _read_json(folder / "scheduler" / "scheduler_config.json", model)
    name = config.get("_class_name", "")
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_pretrained"):
        raise ModelLoadError(f"the scheduler class {name!r} of {model} is not a diffusers scheduler; {_HINT}")
    return scheduler_class.from_pretrained(str(folder), subfolder="scheduler")
