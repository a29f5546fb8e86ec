"""HunyuanVideo's capture: the stock joint attention of the dual-stream blocks, bit for bit, plus a read-only concept
stream whose keys and per-head outputs, with the video queries and per-head outputs, go to the read-out
(``vidseg.maps.readout``) at each map layer. docs/hunyuan.md states the official read-out this follows.

As in CogVideoX (``vidseg.models.cogvideox.capture.ConceptStream``, whose attention this reuses), the concepts are
their own stream: each class name's LLaMA row, zero-padded to 256 slots with a mask, goes through the transformer's
token refiner (``context_embedder``), then in each dual-stream block through the text branch's modules
(``norm1_context``, ``add_{q,k,v}_proj``, ``norm_added_{q,k}``, ``norm2_context``, ``ff_context``) and attends over
[concept slots ; video tokens] without the caption and without a mask. The video never attends to it. The official
processor hands its own (normalised) concept input back in place of the concept attention's output, so the concept
residual is ``x + gate * norm(x)``; this keeps that for fidelity. Maps come from the 20 dual-stream blocks only.

The model is never edited: ``concept_stream_attention`` swaps ``ConceptStreamAttnProcessor`` into dual blocks
0..max(layers), a forward pre-hook on the transformer refines the concept slots with the forward's timestep, and one
on block 0 keeps the conditioning embedding the concept branch's adaLN needs; all are undone on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb

from vidseg.errors import ConfigError
from vidseg.maps.readout import (
    LayerReader, LayerTensors, MapReadout, available_kinds, check_map_settings, check_one_video, check_video_grid,
    slot_layout,
)
from vidseg.models.cogvideox.capture import ConceptStream
from vidseg.models.components import swapped_processors
from vidseg.models.hunyuan.backbone import (
    GUIDANCE_SCALE, TEXT_SLOTS, HunyuanBackbone, HunyuanTextEmbeddings, predict_flow, token_grid,
)


class HunyuanConceptStream(ConceptStream):
    """The concept slots through HunyuanVideo's token refiner and dual-stream blocks (reading the video, never
    writing to it).

    Args:
        embeddings: the slots' LLaMA rows before the refiner ``[B, slots, D]`` (padding rows zero).
        mask: long ``[B, slots]``, 1 for the concepts (the refiner's attention mask and pooling).
        null_weight, map_layers, readout: as for ``ConceptStream``.
    """

    def __init__(self, embeddings: torch.Tensor, mask: torch.Tensor, null_weight: int, map_layers: Sequence[int],
                 readout: LayerReader):
        super().__init__(embeddings, null_weight, map_layers, readout)
        self.mask = mask

    def refine(self, transformer: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook of the transformer: the slots through its token refiner at this forward's timestep."""
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        videos = self.embeddings.shape[0]
        self.hidden = transformer.context_embedder(self.embeddings, timestep[-videos:], self.mask)

    def start(self, block: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook of dual block 0: keep the conditioning embedding (timestep, guidance, pooled CLIP)."""
        temb = kwargs["temb"] if "temb" in kwargs else args[2]
        self.temb = temb[-self.embeddings.shape[0]:]

    def step(self, block: torch.nn.Module, block_idx: int, attn: torch.nn.Module, query: torch.Tensor,
             key: torch.Tensor, value: torch.Tensor, out: torch.Tensor, text_len: int) -> None:
        """Read this block's maps if it is a map layer, then move the concept slots through the block.

        ``query``, ``key``, ``value`` and ``out`` are the joint attention's ``[batch, video_tokens + text_len, heads,
        head_dim]`` tensors (video first, q/k normed, video part with RoPE); the last ``B`` batch elements are read.
        """
        videos, video_len = self.embeddings.shape[0], query.shape[1] - text_len
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1_context(self.hidden, emb=self.temb)
        heads = attn.heads
        concept_queries = attn.add_q_proj(normed).unflatten(2, (heads, -1))
        concept_keys = attn.add_k_proj(normed).unflatten(2, (heads, -1))
        if attn.norm_added_q is not None:
            concept_queries = attn.norm_added_q(concept_queries)
        if attn.norm_added_k is not None:
            concept_keys = attn.norm_added_k(concept_keys)
        concept_values = attn.add_v_proj(normed).unflatten(2, (heads, -1))

        def video(x: torch.Tensor) -> torch.Tensor:  # [B, heads, video_tokens, head_dim]
            return x[-videos:, :video_len].transpose(1, 2)

        concept_queries, concept_keys, concept_values = (x.transpose(1, 2) for x in
                                                         (concept_queries, concept_keys, concept_values))
        attended = self._attend(concept_queries, concept_keys, concept_values, video(key), video(value))
        if block_idx in self.map_layers:
            self.readout.add_layer(LayerTensors(video(out), video(query), concept_keys, attended))
        if block_idx == self.last_layer:
            return  # no later block reads the concept slots
        hidden = self.hidden + normed * gate_msa.unsqueeze(1)  # the official residual (see the module docstring)
        normed = block.norm2_context(hidden) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        self.hidden = hidden + gate_mlp.unsqueeze(1) * block.ff_context(normed)


class ConceptStreamAttnProcessor:
    """``HunyuanVideoAttnProcessor2_0`` of a dual-stream block, op for op (diffusers 0.42.1), with the concept
    stream and map read-out hooked in after the attention call, so the video and caption outputs are bit-identical
    to the stock processor's."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, stream: HunyuanConceptStream, block: torch.nn.Module, block_idx: int):
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
        query = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))  # [B, video_tokens, heads, head_dim]
        key = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:  # RoPE on the video stream
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        encoder_query = attn.add_q_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        encoder_key = attn.add_k_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        encoder_value = attn.add_v_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_added_q is not None:
            encoder_query = attn.norm_added_q(encoder_query)
        if attn.norm_added_k is not None:
            encoder_key = attn.norm_added_k(encoder_key)
        query = torch.cat([query, encoder_query], dim=1)  # video first, then the caption
        key = torch.cat([key, encoder_key], dim=1)
        value = torch.cat([value, encoder_value], dim=1)

        hidden_states = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                              is_causal=False, backend=self._attention_backend,
                                              parallel_config=self._parallel_config)
        text_len = encoder_hidden_states.shape[1]
        self.stream.step(self.block, self.block_idx, attn, query, key, value, hidden_states, text_len)
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        hidden_states, encoder_hidden_states = hidden_states[:, :-text_len], hidden_states[:, -text_len:]
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        return hidden_states, attn.to_add_out(encoder_hidden_states)


def check_readout_arguments(transformer: Any, concept_embeds: torch.Tensor, kinds: Sequence[str],
                            layers: Sequence[int], top_k_heads: int, concept_slots: str) -> list[int]:
    """Validate the read-out options against a ``HunyuanVideoTransformer3DModel``; returns the sorted map layers
    (dual-stream block indices)."""
    cfg = transformer.config
    map_layers = check_map_settings(kinds, layers, top_k_heads, concept_slots,
                                    num_blocks=len(transformer.transformer_blocks), num_heads=cfg.num_attention_heads,
                                    captures=HunyuanBackbone.captures, model=HunyuanBackbone.display_name)
    if concept_embeds.ndim != 2 or concept_embeds.shape[-1] != cfg.text_embed_dim:
        raise ConfigError(f"concept embeddings have shape {tuple(concept_embeds.shape)}; expected [concepts, "
                          f"{cfg.text_embed_dim}]")
    if not 1 <= len(concept_embeds) <= TEXT_SLOTS:
        raise ConfigError(f"{len(concept_embeds)} class names given; HunyuanVideo reads 1 to {TEXT_SLOTS}")
    if cfg.image_condition_type is not None:
        raise ConfigError("this HunyuanVideo transformer is image-to-video; vidseg reads the text-to-video model")
    if any(getattr(block.attn, "fused_projections", False) for block in transformer.transformer_blocks):
        raise ConfigError("the transformer has fused projections; call transformer.unfuse_qkv_projections() first")
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
) -> Iterator[MapReadout]:
    """Run the concept stream and read maps during every transformer forward inside the ``with`` block.

    Args:
        transformer: a diffusers ``HunyuanVideoTransformer3DModel`` (text-to-video).
        concept_embeds: each class name's LLaMA row ``[C, text_embed_dim]``; the other ``256 - C`` slots are zero
            rows outside the mask.
        grid: ``(latent_frames, grid_h, grid_w)`` of the video tokens of the forwards to come.
        kinds: the map kinds to reduce; None: every kind HunyuanVideo gives.
        layers: dual-stream blocks whose maps are averaged; top_k_heads: motion heads per block for the IMAP.
        concept_slots: ``"compact"`` runs the C concepts plus one padding slot standing for all 256 - C of them (its
            refiner attention is theirs, a log n0 logit offset in the concept attention, weight n0 in the z-score;
            exact); ``"full"`` runs all 256 slots literally.

    Yields:
        the ``MapReadout``; call ``.maps()`` after the forward(s).
    """
    kinds = available_kinds(HunyuanBackbone.captures) if kinds is None else kinds
    map_layers = check_readout_arguments(transformer, concept_embeds, kinds, layers, top_k_heads, concept_slots)
    num_concepts = len(concept_embeds)
    weight = transformer.context_embedder.proj_in.weight
    layout = slot_layout(num_concepts, TEXT_SLOTS, concept_slots, weight.device)
    slots = torch.zeros(1, layout.num_slots, concept_embeds.shape[1], dtype=weight.dtype, device=weight.device)
    slots[0, :num_concepts] = concept_embeds.to(slots)
    mask = torch.zeros(1, layout.num_slots, dtype=torch.long, device=weight.device)
    mask[0, :num_concepts] = 1
    readout = MapReadout(kinds, num_concepts, grid, top_k_heads, layout.weights, null_row=layout.null_row)
    stream = HunyuanConceptStream(slots, mask, layout.null_weight, map_layers, readout)

    blocks = transformer.transformer_blocks
    processors = {f"transformer_blocks.{i}.attn.processor": ConceptStreamAttnProcessor(stream, blocks[i], i)
                  for i in range(stream.last_layer + 1)}
    hooks = [transformer.register_forward_pre_hook(stream.refine, with_kwargs=True),
             blocks[0].register_forward_pre_hook(stream.start, with_kwargs=True)]
    with swapped_processors(transformer, processors, hooks):
        yield readout


@torch.no_grad()
def read_concept_maps(
    transformer: Any,
    noisy_latents: torch.Tensor,
    timestep: float,
    prompt_embeds: torch.Tensor,
    concept_embeds: torch.Tensor,
    *,
    prompt_attention_mask: torch.Tensor,
    pooled_prompt_embeds: torch.Tensor,
    guidance: float = GUIDANCE_SCALE * 1000,
    kinds: Sequence[str] | None = None,
    layers: Sequence[int],
    top_k_heads: int = 5,
    concept_slots: str = "compact",
    with_null: bool = False,
) -> dict[str, torch.Tensor]:
    """Read the maps of each class name from one HunyuanVideo forward (docs/hunyuan.md).

    Args:
        transformer: a text-to-video diffusers ``HunyuanVideoTransformer3DModel``.
        noisy_latents: scaled latents already brought to ``timestep`` ``[1, 16, F, H, W]``.
        timestep: σ * 1000 at the read-out point.
        prompt_embeds: the caption's LLaMA rows ``[1, 256, D]``; prompt_attention_mask: long ``[1, 256]``.
        concept_embeds: each class name's LLaMA row ``[C, D]``.
        pooled_prompt_embeds: CLIP's pooled caption ``[1, P]``.
        guidance: the embedded guidance (guidance scale * 1000).
        kinds: the map kinds to reduce; None: every kind HunyuanVideo gives.
        layers: dual-stream blocks averaged (0-based); top_k_heads, concept_slots: as for
            ``concept_stream_attention``.
        with_null: append the null concept's map (a padding slot's) to each kind's maps.

    Returns:
        float32 CPU ``[C, latent_frames, H / 2, W / 2]`` maps of each kind (``[C + 1, ...]`` with ``with_null``):
        ``imap`` (the official ``sel_imap``: mean over the top-k heads by frame separation), ``gramcol`` (``imap``:
        sum over the heads), both z-scored over the 256 slots per head; ``cross_attention`` (the raw logits of each
        video query against the concept key, mean over heads) and ``concept_attention`` (each video token's
        per-head output against the concept's concept-stream output, summed over heads); mean over the layers.
    """
    check_one_video(noisy_latents)
    grid = check_video_grid(token_grid(transformer.config, noisy_latents))
    text = HunyuanTextEmbeddings(prompt_embeds, concept_embeds, prompt_attention_mask, pooled_prompt_embeds)
    with concept_stream_attention(transformer, concept_embeds, grid, kinds=kinds, layers=layers,
                                  top_k_heads=top_k_heads, concept_slots=concept_slots) as readout:
        predict_flow(transformer, noisy_latents, timestep, text, guidance=guidance)
    return readout.maps(with_null=with_null)
