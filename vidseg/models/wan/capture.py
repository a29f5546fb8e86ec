"""Wan2.1's capture: the video queries, prompt keys and per-head outputs of each map layer's text cross-attention
(``attn2``) go to the read-out (``vidseg.maps.readout``), method.md §19.2.

Wan has no joint text-video attention, so there is no concept stream: the video queries, the prompt's keys and the
per-head cross-attention outputs of the stock forward are read directly. A class name is a prompt token (the
first sub-token of the name inside the prompt). The umT5 prompt has 512 slots: the real tokens, then exact zeros,
which the text embedder turns into one identical key, so the compact form keeps the L real slots plus one padding
slot weighted 512 - L (exact, as for CogVideoX's concept slots).

The model is never edited: ``cross_attention_readout`` swaps ``WanReadoutAttnProcessor`` into the map layers'
``attn2`` and restores the original processors on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from vidseg.errors import ConfigError
from vidseg.maps.readout import (
    LayerTensors, MapReadout, available_kinds, check_map_settings, check_one_video, check_video_grid, slot_layout,
)
from vidseg.models.components import swapped_processors
from vidseg.models.wan.backbone import WanBackbone, predict_flow, token_grid


class WanReadoutAttnProcessor:
    """``WanAttnProcessor`` for text-only cross-attention, op for op (diffusers 0.42.1), with the map read-out fed
    the per-head queries, slot keys and outputs of the last batch element (the conditional one)."""

    _attention_backend = None

    def __init__(self, readout: MapReadout, slots: torch.Tensor):
        self.readout = readout
        self.slots = slots  # which of the 512 key positions are read: real tokens, then one padding slot

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        query = attn.norm_q(attn.to_q(hidden_states))  # RMSNorm across all heads, then split
        key = attn.norm_k(attn.to_k(encoder_hidden_states))
        value = attn.to_v(encoder_hidden_states)
        query = query.unflatten(2, (attn.heads, -1))  # [B, tokens, heads, head_dim]
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=None,
        )
        slots = self.slots.to(key.device)
        self.readout.add_layer(LayerTensors(
            hidden_states[-1:].transpose(1, 2), query[-1:].transpose(1, 2), key[-1:, slots].transpose(1, 2)
        ))
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def prompt_length(prompt_embeds: torch.Tensor) -> int:
    """L, the real tokens of a Wan prompt ``[1, 512, D]``: the slots before the exact-zero padding."""
    nonzero = (prompt_embeds[0] != 0).any(dim=-1).nonzero()
    return int(nonzero.max()) + 1 if len(nonzero) else 0


def check_readout_arguments(transformer: Any, prompt_embeds: torch.Tensor, concepts: torch.Tensor,
                            kinds: Sequence[str], layers: Sequence[int], top_k_heads: int,
                            concept_slots: str) -> list[int]:
    """Validate the read-out options against a ``WanTransformer3DModel``; returns the sorted map layers."""
    cfg = transformer.config
    map_layers = check_map_settings(kinds, layers, top_k_heads, concept_slots, num_blocks=len(transformer.blocks),
                                    num_heads=cfg.num_attention_heads, captures=WanBackbone.captures,
                                    model=WanBackbone.display_name)
    if prompt_embeds.ndim != 3 or prompt_embeds.shape[0] != 1 or prompt_embeds.shape[2] != cfg.text_dim:
        raise ConfigError(f"prompt embeddings have shape {tuple(prompt_embeds.shape)}; expected [1, 512, "
                          f"{cfg.text_dim}]")
    length = prompt_length(prompt_embeds)
    if concepts.ndim != 1 or concepts.dtype != torch.long or len(concepts) == 0:
        raise ConfigError("Wan concepts must be a non-empty long tensor of prompt-token positions")
    if int(concepts.min()) < 0 or int(concepts.max()) >= length:
        raise ConfigError(f"concept positions {concepts.tolist()} lie outside the prompt's {length} tokens")
    if any(block.attn2.add_k_proj is not None for block in transformer.blocks):
        raise ConfigError("this Wan model is image-to-video (image keys in attn2); vidseg reads text-to-video Wan")
    if any(getattr(block.attn2, "fused_projections", False) for block in transformer.blocks):
        raise ConfigError("the transformer has fused projections; call transformer.unfuse_qkv_projections() first")
    return map_layers


@contextmanager
def cross_attention_readout(
    transformer: Any,
    prompt_embeds: torch.Tensor,
    concepts: torch.Tensor,
    grid: tuple[int, int, int],
    *,
    kinds: Sequence[str] | None = None,
    layers: Sequence[int],
    top_k_heads: int = 3,
    concept_slots: str = "compact",
) -> Iterator[MapReadout]:
    """Read maps in ``attn2`` of the map layers during every transformer forward inside the ``with`` block.

    Args:
        transformer: a diffusers ``WanTransformer3DModel`` (text-to-video).
        prompt_embeds: the umT5 prompt ``[1, 512, D]``, real tokens then exact zeros.
        concepts: long ``[C]`` prompt-token positions whose maps are returned.
        grid: ``(latent_frames, grid_h, grid_w)`` of the video tokens.
        kinds: the map kinds to reduce; None: every kind Wan gives.
        layers: blocks whose maps are averaged; top_k_heads: motion heads per block for the IMAP.
        concept_slots: ``"compact"`` (the L real slots + one padding slot weighted 512 - L; exact) or ``"full"``
            (all 512 slots literally).

    Yields:
        the ``MapReadout`` (``.maps()`` gives each of ``kinds``).
    """
    kinds = available_kinds(WanBackbone.captures) if kinds is None else kinds
    map_layers = check_readout_arguments(transformer, prompt_embeds, concepts, kinds, layers, top_k_heads,
                                         concept_slots)
    layout = slot_layout(prompt_length(prompt_embeds), prompt_embeds.shape[1], concept_slots, prompt_embeds.device)
    slots = torch.arange(layout.num_slots)  # the real tokens, then (compact) the first padding slot for all of them
    readout = MapReadout(kinds, concepts.tolist(), grid, top_k_heads, layout.weights, null_row=layout.null_row,
                         keys_attended=True)
    processors = {f"blocks.{i}.attn2.processor": WanReadoutAttnProcessor(readout, slots) for i in map_layers}
    with swapped_processors(transformer, processors):
        yield readout


@torch.no_grad()
def read_cross_attention_maps(
    transformer: Any,
    noisy_latents: torch.Tensor,
    timestep: float,
    prompt_embeds: torch.Tensor,
    concepts: torch.Tensor,
    *,
    kinds: Sequence[str] | None = None,
    layers: Sequence[int],
    top_k_heads: int = 3,
    concept_slots: str = "compact",
    with_null: bool = False,
) -> dict[str, torch.Tensor]:
    """Read the maps of each class name from one Wan2.1 forward (method.md §19.2).

    Args:
        transformer: a text-to-video diffusers ``WanTransformer3DModel``.
        noisy_latents: normalised latents already brought to ``timestep`` ``[1, C, F, H, W]``.
        timestep: σ * 1000 at the read-out point.
        prompt_embeds: the umT5 prompt ``[1, 512, D]``, real tokens then zeros.
        concepts: long ``[C]`` prompt-token positions of the class names.
        kinds: the map kinds to reduce; None: every kind Wan gives.
        layers, top_k_heads, concept_slots: as for ``cross_attention_readout``.
        with_null: append the null concept's map (the first padding token's) to each kind's maps.

    Returns:
        float32 CPU ``[C, latent_frames, grid_h, grid_w]`` (``[C + 1, ...]`` with ``with_null``) maps of each
        kind: ``imap`` and ``gramcol`` as for
        CogVideoX, ``cross_attention`` (``cross_attention_maps_layers``: the mean over heads of the softmax over
        the 512 slots of the logits divided by sqrt(d) twice, method.md §10).
    """
    check_one_video(noisy_latents)
    grid = check_video_grid(token_grid(transformer.config, noisy_latents))
    with cross_attention_readout(transformer, prompt_embeds, concepts, grid, kinds=kinds, layers=layers,
                                 top_k_heads=top_k_heads, concept_slots=concept_slots) as readout:
        predict_flow(transformer, noisy_latents, timestep, prompt_embeds)
    return readout.maps(with_null=with_null)
