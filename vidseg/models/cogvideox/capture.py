"""CogVideoX's capture: the stock joint attention, bit for bit, plus a read-only concept stream whose keys and
per-head outputs, with the video queries and per-head outputs, go to the read-out (``vidseg.maps.readout``) at
each map layer (method.md §5-§10).

The model is never edited. ``concept_stream_attention`` swaps ``ConceptStreamAttnProcessor`` into blocks
0..max(layers) (the concept keys of a layer depend on every block before it) and a forward pre-hook on block 0
captures the timestep embedding that the concept tokens' adaLN needs; both are undone on exit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb

from vidseg.errors import ConfigError
from vidseg.maps.readout import (
    CHUNK_BYTES, LayerReader, LayerTensors, MapReadout, available_kinds, check_map_settings, check_one_video,
    check_video_grid, slot_layout,
)
from vidseg.models.cogvideox.backbone import CogVideoXBackbone, predict_velocity, token_grid
from vidseg.models.components import swapped_processors


class ConceptStream:
    """Concept tokens passing the blocks beside the video: they read it, never write to it (method.md §5.2).

    One set of concept slots per video: the sets pair with the last ``B`` elements of the transformer's batch (the
    conditional element of a CFG batch when ``B`` is 1). Nothing here detaches, so gradients flow when the caller
    enables them.

    Args:
        embeddings: the concept slots after the patch embedding's text projection ``[B, slots, dim]``.
        null_weight: n0, how many identical padding slots the last slot stands for (compact mode); 1 when every
            slot is literal.
        map_layers: blocks whose maps are read.
        readout: where each map layer's ``LayerTensors`` go (``B`` videos each).
    """

    def __init__(self, embeddings: torch.Tensor, null_weight: int, map_layers: Sequence[int], readout: LayerReader):
        self.embeddings = embeddings
        self.null_weight = null_weight
        self.map_layers = frozenset(map_layers)
        self.last_layer = max(map_layers)
        self.readout = readout
        self.hidden: torch.Tensor | None = None
        self.temb: torch.Tensor | None = None

    def start(self, block: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook of block 0: a new forward starts, so reset the concept tokens and keep its ``temb``."""
        temb = kwargs["temb"] if "temb" in kwargs else args[2]
        self.temb = temb[-self.embeddings.shape[0]:]
        self.hidden = self.embeddings

    def step(
        self,
        block: torch.nn.Module,
        block_idx: int,
        attn: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        out: torch.Tensor,
        text_len: int,
    ) -> None:
        """Read this block's maps if it is a map layer, then move the concept tokens through the block.

        ``query``, ``key``, ``value`` and ``out`` are the joint attention's ``[batch, heads, text_len + video_tokens,
        head_dim]`` tensors (q/k normed, video part with RoPE). The last ``B`` batch elements are read: the only
        one in a batch of 1, the conditional one in diffusers' [uncond, cond] CFG batches.
        """
        videos = self.embeddings.shape[0]
        shift, scale, gate = _text_modulation(block.norm1, self.temb)
        normed = block.norm1.norm(self.hidden) * (1 + scale) + shift  # [B, slots, dim]
        concept_keys = _split_heads(attn.to_k(normed), attn.heads)
        if attn.norm_k is not None:
            concept_keys = attn.norm_k(concept_keys)
        concept_queries = _split_heads(attn.to_q(normed), attn.heads)
        if attn.norm_q is not None:
            concept_queries = attn.norm_q(concept_queries)
        concept_values = _split_heads(attn.to_v(normed), attn.heads)
        # Also at the last map layer, where no later block reads the tokens: ConceptAttention reads the outputs.
        attended = self._attend(
            concept_queries, concept_keys, concept_values, key[-videos:, :, text_len:], value[-videos:, :, text_len:]
        )  # [B, heads, slots, head_dim]
        if block_idx in self.map_layers:
            self.readout.add_layer(LayerTensors(out[-videos:, :, text_len:], query[-videos:, :, text_len:],
                                                concept_keys, attended))
        if block_idx == self.last_layer:
            return  # no later block reads the concept tokens
        attended = attended.transpose(1, 2).flatten(2)  # [B, slots, heads * head_dim]
        attended = attn.to_out[1](attn.to_out[0](attended))
        hidden = self.hidden + gate * attended
        shift, scale, gate = _text_modulation(block.norm2, self.temb)
        self.hidden = hidden + gate * block.ff(block.norm2.norm(hidden) * (1 + scale) + shift)

    def _attend(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        video_keys: torch.Tensor,
        video_values: torch.Tensor,
    ) -> torch.Tensor:
        """Concept queries over [concept slots ; video tokens] keys, all ``[B, heads, tokens, head_dim]``.

        The video keys already carry RoPE. The joined keys and values are copies, so heads go in chunks to keep
        them near CHUNK_BYTES instead of two more video-sized tensors.
        """
        num_slots = keys.shape[2]
        num_keys = num_slots + video_keys.shape[2]
        bias = None
        if self.null_weight > 1:  # log(n0) on the null slot: it weighs as its n0 identical copies
            bias = keys.new_zeros(1, 1, 1, num_keys)
            bias[..., num_slots - 1] = math.log(self.null_weight)
        chunk = max(1, CHUNK_BYTES // (2 * num_keys * keys.shape[3] * keys.element_size()))
        attended = []
        for start in range(0, keys.shape[1], chunk):
            heads = slice(start, start + chunk)
            joined_keys = torch.cat([keys[:, heads], video_keys[:, heads]], dim=2)
            joined_values = torch.cat([values[:, heads], video_values[:, heads]], dim=2)
            attended.append(
                F.scaled_dot_product_attention(queries[:, heads], joined_keys, joined_values, attn_mask=bias)
            )
        return torch.cat(attended, dim=1)


class ConceptStreamAttnProcessor:
    """``CogVideoXAttnProcessor2_0`` with the concept stream and map read-out hooked in after the SDPA call.

    The joint attention runs the stock ops in the stock order (diffusers 0.42.1), so the video and text outputs
    are bit-identical to the stock processor's.
    """

    def __init__(self, stream: ConceptStream, block: torch.nn.Module, block_idx: int):
        self.stream = stream
        self.block = block
        self.block_idx = block_idx

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)  # [B, text + video, dim]
        batch_size, sequence_length, _ = hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # [B, heads, tokens, head_dim]
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:  # RoPE on the video part only (CogVideoX 1.5 / 5B)
            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        self.stream.step(self.block, self.block_idx, attn, query, key, value, hidden_states, text_seq_length)
        del query, key, value

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states


def check_readout_arguments(
    transformer: Any, concept_embeds: torch.Tensor, kinds: Sequence[str], layers: Sequence[int], top_k_heads: int,
    concept_slots: str,
) -> list[int]:
    """Validate the read-out options against the model; returns the sorted, de-duplicated map layers."""
    cfg = transformer.config
    map_layers = check_map_settings(kinds, layers, top_k_heads, concept_slots,
                                    num_blocks=len(transformer.transformer_blocks), num_heads=cfg.num_attention_heads,
                                    captures=CogVideoXBackbone.captures, model=CogVideoXBackbone.display_name)
    if concept_embeds.ndim not in (2, 3) or concept_embeds.shape[-1] != cfg.text_embed_dim:
        raise ConfigError(
            f"concept embeddings have shape {tuple(concept_embeds.shape)}; expected [concepts, {cfg.text_embed_dim}]"
        )
    num_concepts, text_len = concept_embeds.shape[-2], cfg.max_text_seq_length
    if not 1 <= num_concepts <= text_len:
        raise ConfigError(f"{num_concepts} class names given; the model reads 1 to {text_len} (its text slots)")
    if any(getattr(block.attn1, "fused_projections", False) for block in transformer.transformer_blocks):
        raise ConfigError("the transformer has fused QKV projections; call transformer.unfuse_qkv_projections() first")
    return map_layers


@contextmanager
def concept_stream_attention(
    transformer: Any,
    concept_embeds: torch.Tensor,
    grid: tuple[int, int, int],
    *,
    kinds: Sequence[str] | None = None,
    layers: Sequence[int],
    top_k_heads: int = 5,
    concept_slots: str = "compact",
    reader: LayerReader | None = None,
) -> Iterator[Any]:
    """Run the concept stream and read maps during every transformer forward inside the ``with`` block.

    Args:
        transformer: a diffusers ``CogVideoXTransformer3DModel``.
        concept_embeds: each class name's first-token T5 embedding ``[concepts, text_embed_dim]``; the remaining
            ``max_text_seq_length - concepts`` slots are zero padding. ``[B, concepts, text_embed_dim]`` runs one
            set per video of a batch of B (with a ``reader`` that takes batches, e.g. for training).
        grid: ``(latent_frames, grid_h, grid_w)`` of the video tokens of the forwards to come.
        kinds: the map kinds the default reader reduces; None: every kind CogVideoX gives.
        layers: blocks whose maps are averaged.
        top_k_heads: motion heads per layer (by frame separation) averaged into the IMAP.
        concept_slots: ``"compact"`` runs the C concepts plus one padding slot standing for all n0 of them
            (log n0 logit offset in the concept attention, weight n0 in the z-score; exact); ``"full"`` runs all
            ``max_text_seq_length`` slots literally.

        reader: receives each map layer's tensors; default a new ``MapReadout``.

    Yields:
        the reader; for the ``MapReadout`` call ``.maps()`` after the forward(s) (several forwards average).
    """
    kinds = available_kinds(CogVideoXBackbone.captures) if kinds is None else kinds
    map_layers = check_readout_arguments(transformer, concept_embeds, kinds, layers, top_k_heads, concept_slots)
    text_proj = transformer.patch_embed.text_proj
    concept_embeds = concept_embeds if concept_embeds.ndim == 3 else concept_embeds[None]
    num_concepts = concept_embeds.shape[1]
    weight = text_proj.weight
    layout = slot_layout(num_concepts, transformer.config.max_text_seq_length, concept_slots, weight.device)
    # Padding slots hold u = 0, so they all embed to the text projection's bias.
    slot_inputs = torch.zeros(concept_embeds.shape[0], layout.num_slots, concept_embeds.shape[2], dtype=weight.dtype,
                              device=weight.device)
    slot_inputs[:, :num_concepts] = concept_embeds.to(slot_inputs)
    readout = reader if reader is not None else MapReadout(kinds, num_concepts, grid, top_k_heads, layout.weights,
                                                           null_row=layout.null_row)
    stream = ConceptStream(text_proj(slot_inputs), layout.null_weight, map_layers, readout)

    blocks = transformer.transformer_blocks
    processors = {f"transformer_blocks.{i}.attn1.processor": ConceptStreamAttnProcessor(stream, blocks[i], i)
                  for i in range(stream.last_layer + 1)}
    hook = blocks[0].register_forward_pre_hook(stream.start, with_kwargs=True)
    with swapped_processors(transformer, processors, [hook]):
        yield readout


def _text_modulation(norm: torch.nn.Module, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Text-branch (encoder) shift, scale and gate of a ``CogVideoXLayerNormZero``, each ``[1, 1, dim]``."""
    _, _, _, shift, scale, gate = norm.linear(norm.silu(temb)).chunk(6, dim=1)
    return shift[:, None], scale[:, None], gate[:, None]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, tokens, heads * head_dim]`` -> ``[B, heads, tokens, head_dim]``."""
    return x.unflatten(2, (heads, -1)).transpose(1, 2)


@torch.no_grad()
def read_concept_maps(
    transformer: Any,
    noisy_latents: torch.Tensor,
    timestep: int,
    prompt_embeds: torch.Tensor,
    concept_embeds: torch.Tensor,
    *,
    kinds: Sequence[str] | None = None,
    layers: Sequence[int],
    top_k_heads: int = 5,
    concept_slots: str = "compact",
    with_null: bool = False,
) -> dict[str, torch.Tensor]:
    """Read the maps of each class name from one CogVideoX forward (method.md §5-§9).

    Args:
        transformer: a diffusers ``CogVideoXTransformer3DModel`` (2B-like sin-cos or 5B-like RoPE).
        noisy_latents: latents already brought to ``timestep`` ``[1, F, C, H, W]`` (VAE scaling factor applied).
        timestep: the read-out timestep t.
        prompt_embeds: the caption's T5 output ``[1, text_len, text_dim]``.
        concept_embeds: each class name's first-token T5 embedding ``[C, text_embed_dim]``, C <=
            ``max_text_seq_length``.
        kinds: the map kinds to reduce; None: every kind CogVideoX gives.
        layers: blocks averaged into the maps (0-based).
        top_k_heads: motion heads per layer, by frame separation, averaged into the IMAP.
        concept_slots: ``"compact"`` (exact, C + 1 slots) or ``"full"`` (all text slots literally).
        with_null: append the null concept's map (a padding slot's) to each kind's maps.

    Returns:
        float32 CPU ``[C, latent_frames, grid_h, grid_w]`` maps of each kind (``[C + 1, ...]`` with ``with_null``):
        ``imap`` (the official ``sel_imap_layers``: mean over the top-k heads, then over layers), ``gramcol``
        (``imap_layers``: sum over all heads, then mean over layers), z-scored over the text slots per head;
        ``cross_attention`` (``cross_attention_maps_layers``: the raw logits of each video query against the
        concept key, mean over heads) and ``concept_attention`` (``concept_attention_maps_layers``: each video
        token's per-head output against the concept's concept-stream output, summed over heads), method.md §10.
    """
    check_one_video(noisy_latents)
    grid = check_video_grid(token_grid(transformer.config, noisy_latents))
    with concept_stream_attention(transformer, concept_embeds, grid, kinds=kinds, layers=layers,
                                  top_k_heads=top_k_heads, concept_slots=concept_slots) as readout:
        predict_velocity(transformer, noisy_latents, int(timestep), prompt_embeds)
    return readout.maps(with_null=with_null)
