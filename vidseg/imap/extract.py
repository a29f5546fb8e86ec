"""One instrumented forward that returns the maps of each class name: CogVideoX (concept stream) or Wan2.1
(cross-attention)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError
from vidseg.imap.processor import concept_stream_attention
from vidseg.models.forward import predict_flow, predict_velocity


def is_wan(transformer: Any) -> bool:
    return type(transformer).__name__ == "WanTransformer3DModel"


def latent_token_grid(transformer: Any, latents: torch.Tensor) -> tuple[int, int, int]:
    """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents`` in the transformer's layout
    (CogVideoX ``[B, F, C, H, W]``, Wan ``[B, C, F, H, W]``)."""
    cfg = transformer.config
    if is_wan(transformer):
        p_t, p_h, p_w = cfg.patch_size
        _, _, num_frames, height, width = latents.shape
        return num_frames // p_t, height // p_h, width // p_w
    _, num_frames, _, height, width = latents.shape
    if cfg.patch_size_t is not None:  # CogVideoX 1.5 also patches time
        num_frames //= cfg.patch_size_t
    return num_frames, height // cfg.patch_size, width // cfg.patch_size


@torch.no_grad()
def extract_maps(
    transformer: Any,
    noisy_latents: torch.Tensor,
    timestep: float,
    prompt_embeds: torch.Tensor,
    concepts: torch.Tensor,
    *,
    layers: Sequence[int],
    top_k: int = 5,
    concept_slots: str = "compact",
) -> dict[str, torch.Tensor]:
    """Read the maps of each class name from one transformer forward (method.md §5-§9, §19.2).

    Args:
        transformer: a diffusers ``CogVideoXTransformer3DModel`` (2B-like sin-cos or 5B-like RoPE) or a
            text-to-video ``WanTransformer3DModel``.
        noisy_latents: latents already brought to ``timestep``, in the transformer's layout: CogVideoX
            ``[1, F, C, H, W]`` (VAE scaling factor applied), Wan ``[1, C, F, H, W]`` (normalised).
        timestep: the read-out timestep (CogVideoX: the integer t; Wan: σ * 1000).
        prompt_embeds: the caption's text-encoder output ``[1, text_len, text_dim]`` (Wan: ``[1, 512, D]``, real
            tokens then zeros).
        concepts: CogVideoX: each class name's first-token T5 embedding ``[C, text_embed_dim]``, C <=
            ``max_text_seq_length``; Wan: long ``[C]`` prompt-token positions of the class names.
        layers: blocks averaged into the maps (0-based).
        top_k: motion heads per layer, by frame separation, averaged into the IMAP.
        concept_slots: ``"compact"`` (exact, C + 1 / L + 1 slots) or ``"full"`` (all text slots literally).

    Returns:
        float32 CPU ``[C, latent_frames, grid_h, grid_w]`` maps: ``imap`` (the official ``sel_imap_layers``: mean
        over the top-k heads, then over layers), ``gramcol`` (``imap_layers``: sum over all heads, then mean over
        layers), z-scored over the text slots per head; for Wan also ``cross_attention``
        (``cross_attention_maps_layers``: the mean over heads of the softmax over the 512 slots).
    """
    if noisy_latents.ndim != 5 or noisy_latents.shape[0] != 1:
        raise ConfigError(f"map read-out takes one video's latents [1, ...] (5-D); got shape "
                          f"{tuple(noisy_latents.shape)}")
    grid = latent_token_grid(transformer, noisy_latents)
    if grid[0] < 2:
        raise ConfigError(
            "map read-out needs at least 2 latent frames (9 video frames) to rank heads by frame separation"
        )
    if is_wan(transformer):
        from vidseg.imap.wan import cross_attention_readout

        with cross_attention_readout(transformer, prompt_embeds, concepts, grid, layers=layers, top_k=top_k,
                                     concept_slots=concept_slots) as readout:
            predict_flow(transformer, noisy_latents, timestep, prompt_embeds)
        return readout.maps()
    with concept_stream_attention(
        transformer, concepts, grid, layers=layers, top_k=top_k, concept_slots=concept_slots
    ) as readout:
        predict_velocity(transformer, noisy_latents, int(timestep), prompt_embeds)
    return readout.maps()
