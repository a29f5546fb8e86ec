"""Open a checkpoint: a shipped model, a local diffusers folder, a cached hub snapshot or a fresh download; the
device and dtype asked for; and the family that reads it (``vidseg.registry.BACKBONES``, by the transformer class
the folder names)."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError, first_line
from vidseg.registry import BACKBONES
from vidseg.weights import shipped_model_folder

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 3.0
_DTYPES = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# A tokenizer folder holds one of these: fast tokenizers' tokenizer.json, T5's spiece.model, CLIP's vocab.json.
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "vocab.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def backbone_classes() -> list[Any]:
    """Every registered backbone family's class, in registry order."""
    return list(BACKBONES.load_all().values())


def backbone_class(transformer_class: str) -> Any | None:
    """The backbone implementation for a diffusers transformer class name, or None when vidseg has none."""
    return next((b for b in backbone_classes() if b.transformer_class == transformer_class), None)


def model_hint() -> str:
    """What to pass instead, for the end of a loading error."""
    *others, last = [b.display_name for b in backbone_classes()]
    names = f"{', '.join(others)} or {last}" if others else last
    return (f"pass --model PATH to a local {names} diffusers folder, or --model toy (shipped) with "
            f"`vidseg make-toy-clip` clips to try offline")


def load_model(
    model: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    offload: bool = False,
    vae_tiling: bool = True,
) -> Any:
    """Open a checkpoint of any registered family from a local diffusers folder or a hub id.

    A hub id is looked up in the local cache first; the network is tried only when the hub answers within
    ``HUB_TIMEOUT_S`` seconds, so an offline machine fails at once. Weights load lazily
    (``vidseg.models.components``).

    Args:
        model: local folder with the family's subfolders (``transformer/ vae/ scheduler/ tokenizer/
            text_encoder/``), a hub id such as ``THUDM/CogVideoX-2b``, or a shipped model's name (``toy``).
        device: ``cuda``, ``cuda:1``, ``cpu``...; default cuda when available, else cpu.
        dtype: ``bfloat16`` / ``float16`` / ``float32``; default bfloat16 on a GPU, float32 on a CPU.
        offload: keep transformer (and text encoder) weights on the CPU and move each block to the GPU as it runs;
            a no-op on a CPU.
        vae_tiling: encode frames in spatial tiles to bound VAE memory.

    Returns:
        the family's ``vidseg.models.base.Backbone``.

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
        families = " model nor a ".join(b.display_name for b in backbone_classes())
        raise ModelLoadError(f"{model} is not a {families} one (its transformer is {name!r}); {model_hint()}")
    scheduler = _load_scheduler(folder, model)
    backbone.check_scheduler(scheduler, model)
    return backbone(model, folder, device=torch_device, dtype=torch_dtype, offload=offload, vae_tiling=vae_tiling,
                    scheduler=scheduler, transformer_config=transformer_config,
                    vae_config=_read_json(folder / "vae" / "config.json", model))


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


def _all_subfolders() -> list[str]:
    """Every subfolder some registered family needs, in the order the first family lists them."""
    return list(dict.fromkeys(s for b in backbone_classes() for s in b.required_subfolders))


def _subfolders(folder: Path) -> list[str]:
    """The subfolders ``folder``'s family needs (by its transformer class); when it is unknown, those every family
    needs, so that a folder of another model is told it is not one vidseg reads."""
    try:
        name = json.loads((folder / "transformer" / "config.json").read_text()).get("_class_name", "")
    except (OSError, ValueError):
        name = ""
    backbone = backbone_class(name)
    if backbone is not None:
        return list(backbone.required_subfolders)
    return [name for name in _all_subfolders() if all(name in b.required_subfolders for b in backbone_classes())]


def _missing_parts(folder: Path) -> list[str]:
    """Subfolders (or their weights / configs) that a diffusers folder of its family lacks."""
    missing = []
    for name in _subfolders(folder):
        sub = folder / name
        if not sub.is_dir():
            missing.append(f"{name}/")
        elif name in ("transformer", "vae") or name.startswith("text_encoder"):
            if not (sub / "config.json").is_file() or not any(p.suffix in _WEIGHT_SUFFIXES for p in sub.iterdir()):
                missing.append(f"{name}/ weights")
        elif name == "scheduler" and not (sub / "scheduler_config.json").is_file():
            missing.append("scheduler/scheduler_config.json")
        elif name.startswith("tokenizer") and not any((sub / f).is_file() for f in TOKENIZER_FILES):
            missing.append(f"{name}/ files")
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
            raise ModelLoadError(f"model {model} is a file, not a diffusers folder; {model_hint()}")
        missing = _missing_parts(path)
        if missing:
            raise ModelLoadError(f"model folder {model} lacks {', '.join(missing)}; {model_hint()}")
        return path
    if not _REPO_ID.match(model):
        raise ModelLoadError(f"model {model} is neither a local folder nor a hub id like THUDM/CogVideoX-2b; "
                             f"{model_hint()}")

    from huggingface_hub import constants, snapshot_download

    patterns = [f"{name}/*" for name in _all_subfolders()] + ["model_index.json", "vidseg.yaml"]
    try:
        cached = Path(snapshot_download(model, allow_patterns=patterns, local_files_only=True))
        if not _missing_parts(cached):
            return cached
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        pass
    if constants.HF_HUB_OFFLINE or not _hub_reachable(constants.ENDPOINT):
        raise ModelLoadError(f"model {model} is not a local folder, not in the Hugging Face cache, and the hub "
                             f"cannot be reached; {model_hint()}")
    logger.info("downloading %s from the Hugging Face hub", model)
    try:
        folder = Path(snapshot_download(model, allow_patterns=patterns))
    except Exception as exc:  # hub errors come in many classes (HTTP, repository, revision, disk)
        raise ModelLoadError(f"cannot download {model}: {first_line(exc)}; {model_hint()}") from None
    missing = _missing_parts(folder)
    if missing:
        raise ModelLoadError(f"hub model {model} lacks {', '.join(missing)}; is it a diffusers repository of a "
                             f"video model vidseg reads? {model_hint()}")
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
        raise ModelLoadError(f"cannot read {path.name} of {model}: {first_line(exc)}; {model_hint()}") from None


def _load_scheduler(folder: Path, model: str) -> Any:
    import diffusers

    config = _read_json(folder / "scheduler" / "scheduler_config.json", model)
    name = config.get("_class_name", "")
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_pretrained"):
        raise ModelLoadError(f"the scheduler class {name!r} of {model} is not a diffusers scheduler; {model_hint()}")
    return scheduler_class.from_pretrained(str(folder), subfolder="scheduler")
