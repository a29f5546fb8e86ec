"""The family-agnostic read-out: each map layer's captured per-head tensors in, running sums of the map kinds
asked for out (method.md §6-§9). A backbone's capture (its attention processors) fills ``LayerTensors``; this module
never looks at a model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from vidseg.errors import ConfigError
from vidseg.maps.gramcol import gramcol, surrogate_tokens, zscore_over_slots
from vidseg.maps.heads import frame_separation
from vidseg.maps.kinds import MapKind
from vidseg.registry import CONCEPT_SLOTS, MAP_KINDS

CHUNK_BYTES = 64 * 2**20  # target size of one per-head-chunk temporary in the map read-out


@dataclass(frozen=True)
class LayerTensors:
    """One map layer's per-head tensors for a batch of videos, as a capture hands them over.

    Attributes:
        video_outputs: attention outputs of the video tokens, before the output projection
            ``[B, heads, video_tokens, head_dim]``.
        video_queries: video queries after the q-norm (and RoPE) ``[B, heads, video_tokens, head_dim]``.
        concept_keys: the slots' keys after the k-norm ``[B, heads, slots, head_dim]``.
    """

    video_outputs: torch.Tensor
    video_queries: torch.Tensor
    concept_keys: torch.Tensor


class LayerReader(Protocol):
    """What receives each map layer's tensors (``MapReadout``; a training loss can be another)."""

    def add_layer(self, layer: LayerTensors) -> None: ...


def available_kinds(captures: Iterable[str]) -> tuple[str, ...]:
    """The registered map kinds whose needs a capture providing ``captures`` meets, in registry order."""
    provided = frozenset(captures)
    return tuple(name for name in MAP_KINDS.names() if MAP_KINDS.load(name).needs <= provided)


def check_map_settings(
    kinds: Sequence[str], layers: Sequence[int], top_k_heads: int, concept_slots: str, *, num_blocks: int,
    num_heads: int, captures: Iterable[str], model: str,
) -> list[int]:
    """Validate the read-out settings against a model (its depth, heads and what its capture provides); returns the
    sorted, de-duplicated map layers. Raises ``ConfigError`` naming the setting. The one check of these settings:
    ``Backbone.check_settings`` runs it before anything is loaded, each capture again for direct callers."""
    offered = available_kinds(captures)
    for kind in kinds:
        MAP_KINDS.check(kind)
        if kind not in offered:
            raise ConfigError(f"maps.kind is {kind!r}; {model} gives {', '.join(offered)}")
    if len(layers) == 0:
        raise ConfigError("maps.layers is empty; give at least one transformer block index")
    missing = [i for i in layers if not 0 <= i < num_blocks]
    if missing:
        raise ConfigError(f"map layers {missing} do not exist: the model has blocks 0..{num_blocks - 1}; "
                          f"fix maps.layers")
    if not 1 <= top_k_heads <= num_heads:
        raise ConfigError(f"maps.top_k_heads is {top_k_heads}; it must be between 1 and the model's {num_heads} "
                          f"heads")
    if concept_slots not in CONCEPT_SLOTS:
        raise ConfigError(f"maps.concept_slots is {concept_slots!r}; choose one of {', '.join(CONCEPT_SLOTS)}")
    return sorted(set(layers))


def check_one_video(latents: torch.Tensor) -> None:
    """The read-out takes one video's latents ``[1, ...]`` (5-D, in the transformer's layout)."""
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ConfigError(f"map read-out takes one video's latents [1, ...] (5-D); got shape {tuple(latents.shape)}")


def check_video_grid(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return the token ``grid`` if it has the 2 latent frames that ranking heads by frame separation needs."""
    if grid[0] < 2:
        raise ConfigError(
            "map read-out needs at least 2 latent frames (9 video frames) to rank heads by frame separation"
        )
    return grid


class MapReadout:
    """Running sums of the asked-for map kinds over heads, layers and forwards.

    One ``[latent_frames, patches, concepts]`` float64 sum per kind is kept, whatever the number of layers, heads or
    text slots, and only the terms those kinds need are computed: the z-scored Gram columns for ``imap`` /
    ``gramcol``, the frame separation of the heads only for ``imap``, the attention weights only for
    ``cross_attention``.

    Args:
        kinds: the map kinds to reduce (``MAP_KINDS`` names).
        concept_rows: which slots are the concepts (their maps are returned, in this order); an int C means the
            first C slots.
        grid: ``(latent_frames, grid_h, grid_w)`` of the video tokens.
        top_k_heads: motion heads per layer averaged into the IMAP.
        slot_weights: ``[slots]`` how many text slots each slot stands for (see ``zscore_over_slots``); the
            attention weights add log n0 to the logit of a slot standing for n0 identical ones.
        null_row: the slot of the null concept (a padding slot) whose map ``maps(with_null=True)`` appends; None
            when every slot holds a concept.
    """

    def __init__(self, kinds: Sequence[str], concept_rows: Sequence[int] | int, grid: tuple[int, int, int],
                 top_k_heads: int, slot_weights: torch.Tensor, null_row: int | None = None):
        self.kinds: dict[str, MapKind] = {name: MAP_KINDS.load(name) for name in kinds}
        rows = list(range(concept_rows) if isinstance(concept_rows, int) else concept_rows)
        self.num_concepts = len(rows)
        # The null concept's map is reduced like another concept's: one more row, split off by maps().
        self.read_rows = torch.as_tensor(rows + ([] if null_row is None else [null_row]), dtype=torch.long)
        self.grid = grid
        self.top_k_heads = top_k_heads
        self.slot_weights = slot_weights
        self._gram_kinds = [name for name, kind in self.kinds.items() if kind.term == "gramcol"]
        self._attention_kinds = [name for name, kind in self.kinds.items() if kind.term == "attention"]
        self.gram_sums: torch.Tensor | None = None  # [gram kinds, frames, patches, concepts]
        self.attention_sums: torch.Tensor | None = None  # [frames, patches, concepts]
        self.num_reads = 0

    def add_layer(self, layer: LayerTensors) -> None:
        """Add one layer's maps (method.md §6-§9); ``layer`` holds a batch of one video."""
        if layer.video_outputs.shape[0] != 1:
            raise ValueError(f"MapReadout reads one video at a time, got a batch of {layer.video_outputs.shape[0]}")
        out_video, query_video, concept_keys = layer.video_outputs[0], layer.video_queries[0], layer.concept_keys[0]
        num_frames, grid_h, grid_w = self.grid
        num_heads = out_video.shape[0]
        out_video = out_video.unflatten(1, (num_frames, grid_h * grid_w))  # [heads, frames, patches, head_dim]
        query_video = query_video.unflatten(1, (num_frames, grid_h * grid_w))
        num_slots, head_dim = concept_keys.shape[1], out_video.shape[-1]
        device = out_video.device
        rows = self.read_rows.to(device)
        shape = (num_frames, grid_h * grid_w, len(rows))
        if self.num_reads == 0:
            if self._gram_kinds:
                self.gram_sums = torch.zeros((len(self._gram_kinds), *shape), dtype=torch.float64, device=device)
            if self._attention_kinds:
                self.attention_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        # Heads go in chunks so that each temporary ([heads, slots, frames, patches] float64 at most) stays near
        # CHUNK_BYTES, and small per-head kernels do not dominate on a GPU.
        chunk = max(1, CHUNK_BYTES // (8 * num_frames * grid_h * grid_w * max(num_slots, head_dim)))
        chunks = [slice(start, start + chunk) for start in range(0, num_heads, chunk)]
        head_weights = self._head_weights(out_video, chunks) if self._gram_kinds else None
        for heads in chunks:
            if head_weights is not None:
                idx = surrogate_tokens(query_video[heads], concept_keys[heads])  # [chunk, slots, frames]
                z = zscore_over_slots(gramcol(out_video[heads], idx), self.slot_weights, dim=1)
                z = z.index_select(1, rows).movedim(1, -1)  # [chunk, frames, patches, concepts], as laid out
                self.gram_sums += torch.tensordot(head_weights[:, heads], z, dims=1)
            if self.attention_sums is not None:
                self.attention_sums += self._attention_weights(query_video[heads], concept_keys[heads], rows) / num_heads
        self.num_reads += 1

    def _head_weights(self, out_video: torch.Tensor, chunks: list[slice]) -> torch.Tensor:
        """``[gram kinds, heads]`` float64: each Gram kind's weight on each head. Weights rather than indexing by
        the selection, so a GPU never waits for it; the frame separation only when a kind selects motion heads."""
        num_heads = out_video.shape[0]
        weights = torch.zeros(len(self._gram_kinds), num_heads, dtype=torch.float64, device=out_video.device)
        separation = None
        for i, name in enumerate(self._gram_kinds):
            if self.kinds[name].heads == "motion":
                if separation is None:
                    separation = torch.cat([frame_separation(out_video[heads]) for heads in chunks])
                weights[i, separation.topk(self.top_k_heads).indices] = 1.0 / self.top_k_heads
            else:
                weights[i] = 1.0
        return weights

    def _attention_weights(self, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Sum over heads of softmax over slots of q.k / sqrt(d), at the concept rows -> ``[frames, patches, C]``."""
        dtype = torch.promote_types(q.dtype, torch.float32)
        logits = torch.einsum("hfpd,hsd->hfps", q.to(dtype), k.to(dtype)) / math.sqrt(q.shape[-1])
        weights = self.slot_weights.to(logits)
        logits = logits + weights.log()  # a slot standing for n0 copies weighs n0 times
        # ... and each copy gets a share of its weight (the null row is one padding slot's, as with all slots).
        return (logits.softmax(dim=-1).index_select(-1, rows) / weights[rows]).sum(0).double()

    def maps(self, *, with_null: bool = False) -> dict[str, torch.Tensor]:
        """The kinds asked for: float32 CPU ``[concepts, latent_frames, grid_h, grid_w]``, mean over the read
        layers. ``with_null`` appends the null concept's map, reduced like the concepts' (``[concepts + 1, ...]``):
        what a slot holding no word reads, the contrast a presence decision needs. It is all zeros when the
        read-out has no null row (every text slot holds a concept)."""
        if self.num_reads == 0:
            raise RuntimeError("no map layer was read: run the transformer inside an instrumented forward")
        sums = {name: self.gram_sums[i] for i, name in enumerate(self._gram_kinds)}
        sums.update({name: self.attention_sums for name in self._attention_kinds})
        out = {}
        for name in self.kinds:
            maps = (sums[name] / self.num_reads).permute(2, 0, 1).unflatten(2, self.grid[1:]).float().cpu()
            if not with_null:
                maps = maps[:self.num_concepts]
            elif len(self.read_rows) == self.num_concepts:
                maps = torch.cat([maps, maps.new_zeros(1, *maps.shape[1:])])
            out[name] = maps.contiguous()
        return out
