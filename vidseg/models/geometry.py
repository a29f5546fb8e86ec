"""Random-weight CogVideoX and Wan2.1 components at the real checkpoints' shapes, built without any download.

Cost and memory of a forward depend on shapes, not on weight values, so these stand in for THUDM/CogVideoX-2b and
-5b and Wan-AI/Wan2.1-T2V-1.3B / 14B in benchmarks. CogVideoX: the configurations of diffusers'
``scripts/convert_cogvideox_to_diffusers.py`` (diffusers' default ``CogVideoXTransformer3DModel()`` and
``AutoencoderKLCogVideoX()`` are CogVideoX-2B; 5B has 48 heads, 42 blocks and RoPE, and a VAE scaling factor of
0.7); text encoder T5-v1.1-XXL. Wan2.1: the published transformer configs (1.3B: 30 blocks, 12 heads x 128, FFN
8960; 14B: 40 blocks, 40 heads x 128, FFN 13824), diffusers' default ``AutoencoderKLWan()`` (the Wan2.1 VAE) and
the umT5-XXL encoder. ``stand_in_model`` assembles them into a backbone the pipeline runs like a loaded one.

Weights are allocated and initialised (PyTorch's default init) directly on the target device, so the memory they
take is real. ``num_layers`` truncates the depth for CPU runs; every block keeps the full width, and the token
count depends only on the latents fed in (13 x 30 x 45 video tokens + 226 text tokens at 49 x 480 x 720).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vidseg.errors import ConfigError
from vidseg.models.tiny import COGVIDEOX_2B_SCHEDULER, COGVIDEOX_5B_SCHEDULER

GEOMETRIES = ("cogvideox-2b", "cogvideox-5b", "wan2.1-1.3b", "wan2.1-14b")

# Constructor arguments that differ from diffusers' defaults (which are CogVideoX-2B's).
_TRANSFORMER_ARGS: dict[str, dict[str, Any]] = {
    "cogvideox-2b": {"num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
    "cogvideox-5b": {"num_attention_heads": 48, "num_layers": 42, "use_rotary_positional_embeddings": True},
}
_VAE_SCALING = {"cogvideox-2b": 1.15258426, "cogvideox-5b": 0.7}
_WAN_ARGS: dict[str, dict[str, Any]] = {
    "wan2.1-1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "wan2.1-14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
}
_WAN_COMMON = {"patch_size": (1, 2, 2), "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
               "text_dim": 4096, "freq_dim": 256, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
               "eps": 1e-6, "rope_max_seq_len": 1024}
# google/umt5-xxl, encoder only: T5-XXL's shape with a 256,384-token vocabulary.
UMT5_XXL: dict[str, Any] = {"vocab_size": 256384}

# google/t5-v1_1-xxl, encoder only: 4.76 B parameters with all 24 layers.
T5_XXL: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def is_wan(geometry: str) -> bool:
    return _check_geometry(geometry).startswith("wan")


def full_depth(geometry: str) -> int:
    """Number of transformer blocks of the real checkpoint (2B: 30, 5B: 42, Wan 1.3B: 30, 14B: 40)."""
    return transformer_config(geometry)["num_layers"]


def transformer_config(geometry: str, num_layers: int | None = None) -> dict[str, Any]:
    """Transformer constructor arguments for ``geometry`` with ``num_layers`` blocks (None: all of them); for
    CogVideoX those beyond diffusers' defaults."""
    geometry = _check_geometry(geometry)
    config = dict(_TRANSFORMER_ARGS[geometry]) if not is_wan(geometry) else {**_WAN_COMMON, **_WAN_ARGS[geometry]}
    full = config["num_layers"]
    if num_layers is not None:
        if not 1 <= num_layers <= full:
            raise ConfigError(f"{geometry} has {full} blocks; ask for 1 to {full} layers, not {num_layers}")
        config["num_layers"] = num_layers
    return config


def build_random_transformer(
    geometry: str,
    *,
    num_layers: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Any:
    """A random-weight ``CogVideoXTransformer3DModel`` with the real width, heads and position encoding.

    Args:
        geometry: ``cogvideox-2b`` (30 blocks, 30 heads x 64, 3-D sin-cos) or ``cogvideox-5b`` (42 blocks,
            48 heads x 64, RoPE).
        num_layers: keep only the first ``num_layers`` blocks (None: all).
        dtype: weight dtype (initialised in float32, then cast, as ``from_pretrained(dtype=...)`` holds them).
        device: where the weights are created.
        seed: seed of the random weights.
    """
    from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

    config = transformer_config(geometry, num_layers)
    model_class = WanTransformer3DModel if is_wan(geometry) else CogVideoXTransformer3DModel
    with _seeded(seed, device), torch.device(device):
        model = model_class(**config)
    return _place(model, device, dtype).eval().requires_grad_(False)


def build_random_vae(
    geometry: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0
) -> Any:
    """A random-weight ``AutoencoderKLCogVideoX`` (215.6 M parameters) or ``AutoencoderKLWan`` with the real
    configuration, with slicing and tiling enabled as ``load_model`` sets it up."""
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan

    with _seeded(seed, device), torch.device(device):
        if is_wan(geometry):
            vae = AutoencoderKLWan()
        else:
            vae = AutoencoderKLCogVideoX(scaling_factor=_VAE_SCALING[_check_geometry(geometry)])
    vae = _place(vae, device, dtype).eval().requires_grad_(False)
    vae.enable_slicing()
    vae.enable_tiling()
    return vae


def build_random_text_encoder(
    *, num_layers: int = 24, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", seed: int = 0,
    umt5: bool = False,
) -> Any:
    """A random-weight T5-v1.1-XXL-shaped ``T5EncoderModel`` (``umt5``: umT5-XXL's ``UMT5EncoderModel``, as Wan
    uses) with the first ``num_layers`` of its 24 layers (4096 wide, 64 heads x 64, gated-GELU FF 10240).
    bfloat16 by default, the dtype ``load_model`` runs the text encoder in."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    if not 1 <= num_layers <= T5_XXL["num_layers"]:
        raise ConfigError(f"T5-XXL has {T5_XXL['num_layers']} layers; ask for 1 to 24, not {num_layers}")
    with _seeded(seed, device), torch.device(device):
        if umt5:
            encoder = UMT5EncoderModel(UMT5Config(**{**T5_XXL, **UMT5_XXL, "num_layers": num_layers}))
        else:
            encoder = T5EncoderModel(T5Config(**{**T5_XXL, "num_layers": num_layers}))
    return _place(encoder, device, dtype).eval().requires_grad_(False)


def geometry_scheduler(geometry: str) -> Any:
    """The checkpoint's scheduler: ``CogVideoXDDIMScheduler`` (2B, SNR shift 3), ``CogVideoXDPMScheduler``
    (5B, SNR shift 1) or Wan's ``UniPCMultistepScheduler`` (flow prediction, shift 3)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, UniPCMultistepScheduler

    if is_wan(geometry):
        return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                       num_train_timesteps=1000, flow_shift=3.0)
    if _check_geometry(geometry) == "cogvideox-5b":
        return CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER)
    return CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER)


def stand_in_model(
    geometry: str,
    *,
    num_layers: int | None = None,
    text_layers: int = 24,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Any:
    """A backbone (``CogVideoXModel`` / ``WanModel``) of random real-shape parts, which ``VideoSegmenter`` runs like a
    loaded checkpoint: for timing and memory without a download. The tokenizer is the tiny model's (token ids
    differ from the real vocabulary's, the sequence shapes do not). The text encoder is built when texts are
    encoded and freed afterwards, in bfloat16 on a CPU, as ``load_model`` runs it."""
    from vidseg.models.cogvideox import CogVideoXModel
    from vidseg.models.tiny import _tiny_tokenizer
    from vidseg.models.wan import WanModel

    device = torch.device(device)
    text_dtype = torch.float32 if dtype == torch.float32 and device.type != "cpu" else torch.bfloat16
    transformer = build_random_transformer(geometry, num_layers=num_layers, dtype=dtype, device=device)
    vae = build_random_vae(geometry, dtype=dtype, device=device)
    def encoder() -> Any:
        return build_random_text_encoder(num_layers=text_layers, dtype=text_dtype, device=device,
                                         umt5=is_wan(geometry))

    backbone = WanModel if is_wan(geometry) else CogVideoXModel
    return backbone.from_components(
        geometry, transformer=transformer, vae=vae, text_encoder=encoder, tokenizer=_tiny_tokenizer(),
        scheduler=geometry_scheduler(geometry), device=device, dtype=dtype,
    )


def _check_geometry(geometry: str) -> str:
    if geometry not in GEOMETRIES:
        raise ConfigError(f"geometry {geometry!r} is unknown; choose one of: {', '.join(GEOMETRIES)}")
    return geometry


def _place(module: Any, device: str | torch.device, dtype: torch.dtype) -> Any:
    """Move what was built off ``device`` (buffers computed on the CPU, e.g. the sin-cos table) and cast the
    float32-initialised weights when another dtype is asked for."""
    module = module.to(device)
    return module if dtype == torch.float32 else module.to(dtype)


@contextmanager
def _seeded(seed: int, device: str | torch.device) -> Iterator[None]:
    """Seed the CPU RNG (and ``device``'s, when it is a GPU) for a build, restoring the RNG state afterwards."""
    device = torch.device(device)
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield
