"""Wan2.1's random-weight builders: the tiny pipeline (``vidseg.models.tiny``) and the real checkpoints' geometries
(``vidseg.models.geometry``): the published transformer configs (1.3B: 30 blocks, 12 heads x 128, FFN 8960; 14B: 40
blocks, 40 heads x 128, FFN 13824), diffusers' default ``AutoencoderKLWan()`` (the Wan2.1 VAE) and the umT5-XXL
encoder. 13 x 30 x 52 video tokens at 49 x 480 x 832.
"""

from __future__ import annotations

from typing import Any

import torch

from vidseg.errors import ConfigError
from vidseg.models.tiny import SmallModelSpec, text_encoder_config, tiny_tokenizer

GEOMETRIES = ("wan2.1-1.3b", "wan2.1-14b")
_WAN_ARGS: dict[str, dict[str, Any]] = {
    "wan2.1-1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "wan2.1-14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
}
_WAN_COMMON = {"patch_size": (1, 2, 2), "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
               "text_dim": 4096, "freq_dim": 256, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
               "eps": 1e-6, "rope_max_seq_len": 1024}
# google/umt5-xxl, encoder only: T5-XXL's shape with a 256,384-token vocabulary.
UMT5_XXL: dict[str, Any] = {"vocab_size": 256384}
TINY_PRESET = "tiny-wan"  # configs/<preset>.yaml of the tiny model


def transformer_config(geometry: str) -> dict[str, Any]:
    return {**_WAN_COMMON, **_WAN_ARGS[geometry]}


def build_vae(geometry: str) -> Any:
    """diffusers' default ``AutoencoderKLWan()``: the Wan2.1 VAE, for both sizes."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan()


def build_text_encoder(config: dict[str, Any]) -> Any:
    """A ``UMT5EncoderModel`` of ``config`` (T5-XXL's keys) with umT5's vocabulary."""
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(**{**config, **UMT5_XXL}))


def scheduler(geometry: str) -> Any:
    """Wan's ``UniPCMultistepScheduler`` (flow prediction, shift 3)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                   flow_shift=3.0)


def random_text(transformer_config: dict[str, Any], num_concepts: int, generator: torch.Generator) -> Any:
    """A random 24-token caption padded with zeros to umT5's 512 slots, and concepts at its tokens 4, 5, ...
    (benchmarks: cost does not depend on the values)."""
    from vidseg.models.base import TextEmbeddings

    dim = transformer_config["text_dim"]
    prompt = torch.zeros(1, 512, dim)
    prompt[:, :24] = torch.randn(1, 24, dim, generator=generator)
    return TextEmbeddings(prompt, torch.arange(4, 4 + num_concepts))


def build_tiny_pipeline(spec: SmallModelSpec, *, seed: int = 0, rope: bool = False) -> Any:
    """A random-weight ``WanPipeline`` of ``spec``'s shape: ``WanTransformer3DModel`` (cross-attention to 512
    umT5 slots), ``AutoencoderKLWan`` (x4 time, x8 space, normalised latents), a umT5-style encoder with the tiny
    tokenizer, and Wan's flow-matching UniPC scheduler (shift 3)."""
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    if rope:
        raise ConfigError("--rope makes a CogVideoX-5B-like model; Wan always uses RoPE, leave --rope out")
    tokenizer = tiny_tokenizer(spec.extra_words)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = UMT5EncoderModel(UMT5Config(**text_encoder_config(spec, tokenizer)))
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=spec.heads, attention_head_dim=spec.head_dim,
            in_channels=spec.latent_channels, out_channels=spec.latent_channels, text_dim=spec.text_dim,
            freq_dim=spec.time_embed_dim, ffn_dim=2 * spec.heads * spec.head_dim, num_layers=spec.layers,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
        )
        channels = spec.latent_channels
        vae = AutoencoderKLWan(
            base_dim=spec.vae_widths[0], z_dim=channels, dim_mult=[1] * len(spec.vae_widths), num_res_blocks=1,
            attn_scales=[], temperal_downsample=[False, True, True],
            # Per-channel statistics like the real VAE's lists, so the normalisation is exercised.
            latents_mean=[round(0.1 * (i - channels / 2), 3) for i in range(channels)],
            latents_std=[round(0.8 + 0.2 * i, 3) for i in range(channels)],
        )
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler("wan2.1-1.3b"))
