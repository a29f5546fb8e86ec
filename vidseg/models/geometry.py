"""Random-weight components at the real checkpoints' shapes ("geometries"), built without any download.

Cost and memory of a forward depend on shapes, not on weight values, so these stand in for the published
checkpoints in benchmarks. Each family's ``parts`` module (``Backbone.parts_module``) lists its geometries and
builds them; this module finds the family of a geometry name and assembles its parts into a backbone the pipeline
runs like a loaded one (``stand_in_model``).

Weights are allocated and initialised (PyTorch's default init) directly on the target device, so the memory they
take is real. ``num_layers`` truncates the depth for CPU runs; every block keeps the full width, and the token
count depends only on the latents fed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch

from vidseg.errors import ConfigError

# google/t5-v1_1-xxl, encoder only: 4.76 B parameters with all 24 layers (umT5-XXL has its shape with a larger
# vocabulary).
T5_XXL: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def _families() -> dict[str, tuple[Any, ModuleType]]:
    """geometry name -> (backbone class, its parts module), over every registered family."""
    import importlib

    from vidseg.models.hub import backbone_classes

    out = {}
    for backbone in backbone_classes():
        parts = importlib.import_module(backbone.parts_module)
        out.update({name: (backbone, parts) for name in parts.GEOMETRIES})
    return out


def geometries() -> tuple[str, ...]:
    """Every geometry name vidseg can build (``cogvideox-2b``, ``wan2.1-14b``, ...)."""
    return tuple(_families())


def family_parts(geometry: str) -> tuple[Any, ModuleType]:
    """``(backbone class, parts module)`` of ``geometry``; ``ConfigError`` listing the known ones otherwise."""
    families = _families()
    if geometry not in families:
        raise ConfigError(f"geometry {geometry!r} is unknown; choose one of: {', '.join(families)}")
    return families[geometry]


def transformer_config(geometry: str, num_layers: int | None = None) -> dict[str, Any]:
    """Transformer constructor arguments for ``geometry`` with ``num_layers`` blocks (None: all of them); for
    CogVideoX those beyond diffusers' defaults."""
    config = dict(family_parts(geometry)[1].transformer_config(geometry))
    full = config["num_layers"]
    if num_layers is not None:
        if not 1 <= num_layers <= full:
            raise ConfigError(f"{geometry} has {full} blocks; ask for 1 to {full} layers, not {num_layers}")
        config["num_layers"] = num_layers
        if "num_single_layers" in config:  # HunyuanVideo's single-stream blocks hold no maps: a truncated
            config["num_single_layers"] = 0  # model keeps the map blocks only (an upper bound on the overhead)
    return config


def full_depth(geometry: str) -> int:
    """Number of transformer blocks of the real checkpoint (2B: 30, 5B: 42, Wan 1.3B: 30, 14B: 40)."""
    return transformer_config(geometry)["num_layers"]


def build_random_transformer(
    geometry: str,
    *,
    num_layers: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Any:
    """A random-weight transformer of ``geometry``'s family with the real width, heads and position encoding.

    Args:
        geometry: a name from ``geometries()``.
        num_layers: keep only the first ``num_layers`` blocks (None: all).
        dtype: weight dtype (initialised in float32, then cast, as ``from_pretrained(dtype=...)`` holds them).
        device: where the weights are created.
        seed: seed of the random weights.
    """
    import diffusers

    backbone, _ = family_parts(geometry)
    config = transformer_config(geometry, num_layers)
    with seeded(seed, device), torch.device(device):
        model = getattr(diffusers, backbone.transformer_class)(**config)
    return place(model, device, dtype).eval().requires_grad_(False)


def build_random_vae(
    geometry: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0
) -> Any:
    """A random-weight VAE with the real configuration, with slicing and tiling enabled as ``load_model`` sets it
    up."""
    _, parts = family_parts(geometry)
    with seeded(seed, device), torch.device(device):
        vae = parts.build_vae(geometry)
    vae = place(vae, device, dtype).eval().requires_grad_(False)
    vae.enable_slicing()
    vae.enable_tiling()
    return vae


def build_random_text_encoder(
    geometry: str, *, num_layers: int = 24, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
    seed: int = 0,
) -> Any:
    """A random-weight T5-XXL-shaped encoder of ``geometry``'s family (T5-v1.1-XXL for CogVideoX, umT5-XXL for Wan)
    with the first ``num_layers`` of its 24 layers (4096 wide, 64 heads x 64, gated-GELU FF 10240). bfloat16 by
    default, the dtype ``load_model`` runs the text encoder in."""
    _, parts = family_parts(geometry)
    if not 1 <= num_layers <= T5_XXL["num_layers"]:
        raise ConfigError(f"T5-XXL has {T5_XXL['num_layers']} layers; ask for 1 to 24, not {num_layers}")
    with seeded(seed, device), torch.device(device):
        encoder = parts.build_text_encoder({**T5_XXL, "num_layers": num_layers})
    return place(encoder, device, dtype).eval().requires_grad_(False)


def stand_in_model(
    geometry: str,
    *,
    num_layers: int | None = None,
    text_layers: int = 24,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Any:
    """A backbone of random real-shape parts, which ``VideoSegmenter`` runs like a loaded checkpoint: for timing
    and memory without a download. The tokenizer is the tiny model's (token ids differ from the real vocabulary's,
    the sequence shapes do not). The text encoder is built when texts are encoded and freed afterwards, in bfloat16
    on a CPU, as ``load_model`` runs it."""
    from vidseg.models.tiny import tiny_tokenizer

    backbone, parts = family_parts(geometry)
    device = torch.device(device)
    text_dtype = torch.float32 if dtype == torch.float32 and device.type != "cpu" else torch.bfloat16
    transformer = build_random_transformer(geometry, num_layers=num_layers, dtype=dtype, device=device)
    vae = build_random_vae(geometry, dtype=dtype, device=device)

    def encoder() -> Any:
        return build_random_text_encoder(geometry, num_layers=text_layers, dtype=text_dtype, device=device)

    return backbone.from_components(
        geometry, transformer=transformer, vae=vae, text_encoder=encoder, tokenizer=tiny_tokenizer(),
        scheduler=parts.scheduler(geometry), device=device, dtype=dtype,
    )


def place(module: Any, device: str | torch.device, dtype: torch.dtype) -> Any:
    """Move what was built off ``device`` (buffers computed on the CPU, e.g. the sin-cos table) and cast the
    float32-initialised weights when another dtype is asked for."""
    module = module.to(device)
    return module if dtype == torch.float32 else module.to(dtype)


@contextmanager
def seeded(seed: int, device: str | torch.device) -> Iterator[None]:
    """Seed the CPU RNG (and ``device``'s, when it is a GPU) for a build, restoring the RNG state afterwards."""
    device = torch.device(device)
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield
