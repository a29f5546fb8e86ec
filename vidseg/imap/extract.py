"""One instrumented forward of CogVideoX that returns the IMAP and GramCol maps of each class name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError
from vidseg.imap.processor import concept_stream_attention
from vidseg.models.forward import predict_velocity


def latent_token_grid(transformer: Any, latents: torch.Tensor) -> tuple[int, int, int]:
    """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents`` [B, F, C, H, W]."""
    cfg = transformer.config
    _, num_frames, _, height, width = latents.shape
    if cfg.patch_size_t is not None:  # CogVideoX 1.5 also patches time
        num_frames //= cfg.patch_size_t
    return num_frames, height // cfg.patch_size, width // cfg.patch_size


@torch.no_grad()
def extract_maps(
    transformer: Any,
    noisy_latents: torch.Tensor,
    timestep: int,
    prompt_embeds: torch.Tensor,
    concept_embeds: torch.Tensor,
    *,
    layers: Sequence[int],
    top_k: int = 5,
    concept_slots: str = "compact",
) -> dict[str, torch.Tensor]:
    """Read the IMAP and GramCol maps of each class name from one transformer forward (method.md §5-§9).

    Args:
        transformer: a diffusers ``CogVideoXTransformer3DModel`` (2B-like sin-cos or 5B-like RoPE).
        noisy_latents: latents already noised to ``timestep`` (VAE scaling factor applied) ``[1, F, C, H, W]``.
        timestep: the integer read-out timestep.
        prompt_embeds: the caption's T5 output ``[1, text_len, text_embed_dim]``.
        concept_embeds: each class name's first-token T5 embedding ``[concepts, text_embed_dim]``, concepts <=
            ``max_text_seq_length`` (the rest are zero padding slots).
        layers: blocks averaged into the maps (0-based).
        top_k: motion heads per layer, by frame separation, averaged into the IMAP.
        concept_slots: ``"compact"`` (exact, C + 1 slots) or ``"full"`` (all text slots literally).

    Returns:
        ``{"imap", "gramcol"}``, float32 CPU ``[concepts, latent_frames, grid_h, grid_w]``: the official code's
        ``sel_imap_layers`` (mean over the top-k heads, then over layers) and ``imap_layers`` (sum over all heads,
        then mean over layers), z-scored over the concept slots per head.
    """
    if noisy_latents.ndim != 5 or noisy_latents.shape[0] != 1:
        raise ConfigError(f"map read-out takes latents [1, F, C, H, W]; got shape {tuple(noisy_latents.shape)}")
    grid = latent_token_grid(transformer, noisy_latents)
    if grid[0] < 2:
        raise ConfigError(
            "map read-out needs at least 2 latent frames (9 video frames) to rank heads by frame separation"
        )
    with concept_stream_attention(
        transformer, concept_embeds, grid, layers=layers, top_k=top_k, concept_slots=concept_slots
    ) as readout:
        predict_velocity(transformer, noisy_latents, timestep, prompt_embeds)
    return readout.maps()
