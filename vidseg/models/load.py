"""Load CogVideoX (hub id or local diffusers folder) component by component, with T5 loaded only while needed.

Memory plan: ``load_model`` reads configs and the scheduler only and checks that the weights are there. The T5
encoder is loaded by the first ``encode_text`` call, and ``release_text_encoder`` frees it. The transformer and the
VAE are loaded and moved to the device on first access of ``model.transformer`` / ``model.vae``. So encoding all
texts, releasing T5, then running the model never holds T5 (4.8 B parameters for the real models) and the
transformer at the same time. Calling ``encode_text`` after the release loads T5 again.

T5 runs in bfloat16 (the dtype it is distributed and used in) except when float32 is asked for on a GPU; on a
CPU this halves its 19 GB float32 footprint. It never runs in float16, where T5 overflows.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError

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
# Models shipped inside the package, by the name --model takes (vidseg/models/<name>/, diffusers layout).
PACKAGED_MODELS = ("toy",)
_HINT = "pass --model PATH to a local CogVideoX diffusers folder, or run `vidseg make-tiny-model DIR` to try offline"


class CogVideoXModel:
    """A CogVideoX checkpoint: transformer, VAE and scheduler, plus T5 text encoding.

    Attributes:
        source: what was asked for (hub id or path).
        folder: the local diffusers folder the weights come from.
        device: where the model runs (the execution device with ``offload``).
        dtype: transformer and VAE dtype; ``encode_text`` returns embeddings in it.
        scheduler: the checkpoint's scheduler (``CogVideoXDDIMScheduler`` for 2B, ``CogVideoXDPMScheduler`` for 5B).
        preset_path: the folder's ``vidseg.yaml`` (settings shipped with the model, e.g. the tiny model's), or None.
        transformer_config: the transformer's config.json as a dict (available without loading the weights).
    """

    def __init__(self, source: str, folder: Path, *, device: torch.device, dtype: torch.dtype, offload: bool,
                 vae_tiling: bool, scheduler: Any, transformer_config: dict[str, Any]):
        self.source = source
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.vae_tiling = vae_tiling
        self.scheduler = scheduler
        self.transformer_config = transformer_config
        preset = folder / "vidseg.yaml"
        self.preset_path: Path | None = preset if preset.is_file() else None
        self.text_dtype = torch.float32 if dtype == torch.float32 and device.type != "cpu" else torch.bfloat16
        self._transformer: Any = None
        self._vae: Any = None
        self._tokenizer: Any = None
        self._text_encoder: Any = None

    def __repr__(self) -> str:
        return f"CogVideoXModel({self.source!r}, device={self.device}, dtype={self.dtype}, offload={self.offload})"

    @property
    def transformer(self) -> Any:
        """``CogVideoXTransformer3DModel`` in ``dtype`` on ``device`` (weights on the CPU with ``offload``)."""
        if self._transformer is None:
            from diffusers import CogVideoXTransformer3DModel

            transformer = self._load("transformer", CogVideoXTransformer3DModel.from_pretrained, dtype=self.dtype)
            self._transformer = self._place(transformer.eval(), "block_level")
        return self._transformer

    @property
    def vae(self) -> Any:
        """``AutoencoderKLCogVideoX`` in ``dtype`` on ``device``, with slicing (and tiling when configured)."""
        if self._vae is None:
            from diffusers import AutoencoderKLCogVideoX

            vae = self._load("vae", AutoencoderKLCogVideoX.from_pretrained, dtype=self.dtype)
            vae.enable_slicing()
            if self.vae_tiling:
                vae.enable_tiling()
            self._vae = vae.eval().to(self.device)
        return self._vae

    @property
    def text_encoder_loaded(self) -> bool:
        return self._text_encoder is not None

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings of the prompt and of each class name (loads T5 if it is not loaded).

        The prompt is padded / truncated to the transformer's ``max_text_seq_length`` tokens (226 for the real
        models), as the CogVideoX pipeline does. Each class name is tokenised and encoded on its own
        (``CONCEPT_MAX_TOKENS`` tokens) and only the embedding of its first token is kept (method.md §5.1).

        Returns:
            ``prompt_embeds [1, text_len, text_dim]`` and ``concept_embeds [concepts, text_dim]``, in ``dtype`` on
            ``device``.
        """
        tokenizer, encoder = self._load_text_encoder()
        text_len = int(self.transformer_config["max_text_seq_length"])
        prompt_embeds, concept_embeds = t5_embeddings(
            tokenizer, encoder, prompt, classes, text_len=text_len, device=self.device
        )
        return prompt_embeds.to(self.dtype), concept_embeds.to(self.dtype)

    # -- the backbone interface the pipeline composes (vidseg.pipeline.VideoSegmenter.window_saliency) ---------------

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] -> clean latents in the transformer's layout ``[1, F, C, h, w]``."""
        from vidseg.inversion import encode_frames

        return encode_frames(self.vae, pixels.to(self.device, self.dtype))

    @torch.no_grad()
    def noise_to_readout(
        self, latents: torch.Tensor, prompt_embeds: torch.Tensor, inversion: Any, *, on_step: Any = None
    ) -> tuple[torch.Tensor, int]:
        """Bring clean latents to the read-out timestep: DDIM inversion or the official single noising.

        ``inversion`` is a ``vidseg.config.InversionConfig``; ``on_step(i, n)`` is called after each inversion step.
        Returns the noisy latents and the integer read-out timestep.
        """
        from vidseg.inversion import invert_video, renoise_video

        if inversion.method == "ddim":
            return invert_video(self.transformer, self.scheduler, latents, prompt_embeds.to(self.device, self.dtype),
                                num_steps=inversion.num_steps, readout_index=inversion.readout_index,
                                on_step=on_step)
        return renoise_video(self.scheduler, latents, num_steps=inversion.num_steps,
                             readout_index=inversion.readout_index, seed=inversion.seed)

    @torch.no_grad()
    def read_maps(
        self, noisy: torch.Tensor, timestep: int, prompt_embeds: torch.Tensor, concept_embeds: torch.Tensor,
        maps: Any,
    ) -> dict[str, torch.Tensor]:
        """The instrumented read-out forward: ``{"imap", "gramcol"}`` maps ``[C, F, h, w]`` on the token grid.

        ``maps`` is a ``vidseg.config.MapsConfig`` (layers, motion heads, concept slots).
        """
        from vidseg.imap import extract_maps

        return extract_maps(
            self.transformer, noisy.to(self.dtype), timestep, prompt_embeds.to(self.device, self.dtype),
            concept_embeds.to(self.device, self.dtype), layers=maps.layers, top_k=maps.top_k_heads,
            concept_slots=maps.concept_slots,
        )

    def release_text_encoder(self) -> None:
        """Free T5 (host and GPU memory). ``encode_text`` loads it again if called later."""
        if self._text_encoder is None:
            return
        self._text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.debug("released the T5 text encoder of %s", self.source)

    def _load_text_encoder(self) -> tuple[Any, Any]:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = self._load("tokenizer", AutoTokenizer.from_pretrained)
        if self._text_encoder is None:
            from transformers import T5EncoderModel

            encoder = self._load("text_encoder", T5EncoderModel.from_pretrained, dtype=self.text_dtype)
            self._text_encoder = self._place(encoder.eval(), "leaf_level")
        return self._tokenizer, self._text_encoder

    def _load(self, subfolder: str, loader: Any, **kwargs: Any) -> Any:
        try:
            with quiet_progress_bars():
                return loader(str(self.folder), subfolder=subfolder, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot load the {subfolder} of {self.source}: {_first_line(exc)}; "
                                 f"re-download the model or {_HINT}") from None

    def _place(self, module: Any, offload_type: str) -> Any:
        """Move to the device, or with ``offload`` on a GPU keep weights on the CPU and move each block (or, for T5,
        each layer) to the GPU while it runs."""
        if not (self.offload and self.device.type == "cuda"):
            return module.to(self.device)
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(module, onload_device=self.device, offload_type=offload_type,
                               num_blocks_per_group=1 if offload_type == "block_level" else None, use_stream=True)
        return module


def load_model(
    model: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    offload: bool = False,
    vae_tiling: bool = True,
) -> CogVideoXModel:
    """Open a CogVideoX checkpoint from a local diffusers folder or a Hugging Face hub id.

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
        ModelLoadError: weights missing (offline hub id, wrong path, incomplete folder) or not a CogVideoX model.
        ConfigError: unknown dtype or unavailable device.
    """
    torch_device = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, torch_device)
    if offload and torch_device.type != "cuda":
        logger.info("offload only applies on a CUDA device; running everything on %s", torch_device)
    folder = _resolve_folder(model)
    transformer_config = _read_json(folder / "transformer" / "config.json", model)
    if transformer_config.get("_class_name") != "CogVideoXTransformer3DModel":
        raise ModelLoadError(f"{model} is not a CogVideoX model (its transformer is "
                             f"{transformer_config.get('_class_name')!r}); {_HINT}")
    scheduler = _load_scheduler(folder, model)
    return CogVideoXModel(model, folder, device=torch_device, dtype=torch_dtype, offload=offload,
                          vae_tiling=vae_tiling, scheduler=scheduler, transformer_config=transformer_config)


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


def packaged_model_folder(name: str) -> Path | None:
    """The folder of a model shipped inside vidseg (``--model toy``), or None when ``name`` is not one."""
    if name not in PACKAGED_MODELS:
        return None
    from importlib import resources

    return Path(str(resources.files("vidseg.models") / name))


def _resolve_folder(model: str) -> Path:
    """The local folder holding ``model``: a packaged model, the path itself, a cached hub snapshot, or a fresh
    download."""
    packaged = packaged_model_folder(model)
    if packaged is not None and not (packaged / "model_index.json").is_file():
        raise ModelLoadError(f"the {model} model shipped with vidseg is missing from this installation ({packaged}); "
                             f"reinstall vidseg, or rebuild it with tools/train_toy_model.py")
    path = packaged or Path(model).expanduser()
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
        raise ModelLoadError(f"cannot download {model}: {_first_line(exc)}; {_HINT}") from None
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
        raise ModelLoadError(f"cannot read {path.name} of {model}: {_first_line(exc)}; {_HINT}") from None


def _load_scheduler(folder: Path, model: str) -> Any:
    import diffusers

    config = _read_json(folder / "scheduler" / "scheduler_config.json", model)
    name = config.get("_class_name", "")
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_pretrained"):
        raise ModelLoadError(f"the scheduler class {name!r} of {model} is not a diffusers scheduler; {_HINT}")
    scheduler = scheduler_class.from_pretrained(str(folder), subfolder="scheduler")
    if not hasattr(scheduler, "alphas_cumprod") or scheduler.config.get("prediction_type") != "v_prediction":
        raise ModelLoadError(f"{model} uses {name} with prediction {scheduler.config.get('prediction_type')!r}; "
                             "vidseg needs a v-prediction DDIM-type scheduler (CogVideoXDDIMScheduler / "
                             "CogVideoXDPMScheduler)")
    return scheduler


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
