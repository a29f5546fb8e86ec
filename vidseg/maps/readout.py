"""The family-agnostic read-out: each map layer's captured per-head tensors in, running sums of the map kinds
asked for out (method.md §6-§9). A backbone's capture (its attention processors) fills ``LayerTensors``; this module
never looks at a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from vidseg.errors import ConfigError
from vidseg.maps.gramcol import gramcol, surrogate_tokens, zscore_over_slots
from vidseg.maps.heads import frame_separation, statistics_dtype
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
        concept_outputs: the slots' attention outputs in a concept stream, before the output projection
            ``[B, heads, slots, head_dim]``; None where the backbone has no concept stream.
    """

    video_outputs: torch.Tensor
    video_queries: torch.Tensor
    concept_keys: torch.Tensor
    concept_outputs: torch.Tensor | None = None


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


@dataclass(frozen=True)
class SlotLayout:
    """The text slots a read-out runs: the ``used`` ones (concepts, or a prompt's real tokens) first, then the
    padding slots, which are all identical, so ``compact`` keeps one of them standing for all.

    Attributes:
        num_slots: slots run.
        null_weight: n0, how many padding slots the last one stands for (1 when every slot is literal).
        weights: ``[num_slots]`` float32, what ``MapReadout(slot_weights=)`` takes (1, and n0 on the last slot).
        null_row: the first padding slot (the null concept), None when every slot is used.
    """

    num_slots: int
    null_weight: int
    weights: torch.Tensor
    null_row: int | None


def slot_layout(used: int, total: int, concept_slots: str, device: torch.device | str | None = None) -> SlotLayout:
    """The slots of ``total`` to run when the first ``used`` hold words: all of them (``full``), or the used ones
    plus one padding slot weighted ``total - used`` (``compact``, exact)."""
    num_null = total - used
    compact = concept_slots == "compact" and num_null > 0
    num_slots = used + 1 if compact else total
    null_weight = num_null if compact else 1
    weights = torch.ones(num_slots, dtype=torch.float32, device=device)
    weights[-1] = null_weight
    return SlotLayout(num_slots, null_weight, weights, used if num_null > 0 else None)


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
    ``gramcol``, the frame separation of the heads only for ``imap``, the query-key products only for
    ``cross_attention``, the concept-stream products only for ``concept_attention``. Every term is computed in at
    least float32 from the model's activations, whatever the model's dtype (the Gram columns and z-scores in
    float64), so a bfloat16 model's maps differ from a float32 run only as much as its activations do.

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
        keys_attended: the concept keys are keys of the attention the video queries run (Wan's text
            cross-attention): ``cross_attention`` is then a softmax over the slots of the logits divided by sqrt(d)
            twice, as the official Wan code computes it; otherwise (a concept stream, CogVideoX) the raw logits.
    """

    def __init__(self, kinds: Sequence[str], concept_rows: Sequence[int] | int, grid: tuple[int, int, int],
                 top_k_heads: int, slot_weights: torch.Tensor, null_row: int | None = None, *,
                 keys_attended: bool = False):
        self.kinds: dict[str, MapKind] = {name: MAP_KINDS.load(name) for name in kinds}
        rows = list(range(concept_rows) if isinstance(concept_rows, int) else concept_rows)
        self.num_concepts = len(rows)
        # The null concept's map is reduced like another concept's: one more row, split off by maps().
        self.read_rows = torch.as_tensor(rows + ([] if null_row is None else [null_row]), dtype=torch.long)
        self.grid = grid
        self.top_k_heads = top_k_heads
        self.slot_weights = slot_weights
        self.keys_attended = keys_attended
        self._by_term: dict[str, list[str]] = {}  # each per-head term computed once for the kinds summing it
        for name, kind in self.kinds.items():
            self._by_term.setdefault(kind.term, []).append(name)
        self.sums: dict[str, torch.Tensor] = {}  # kind -> [frames, patches, concepts] float64
        self.num_reads = 0

    def add_layer(self, layer: LayerTensors) -> None:
        """Add one layer's maps (method.md §6-§10); ``layer`` holds a batch of one video."""
        if layer.video_outputs.shape[0] != 1:
            raise ValueError(f"MapReadout reads one video at a time, got a batch of {layer.video_outputs.shape[0]}")
        num_frames, grid_h, grid_w = self.grid
        # [heads, frames, patches, head_dim]
        out_video = layer.video_outputs[0].unflatten(1, (num_frames, grid_h * grid_w))
        query_video = layer.video_queries[0].unflatten(1, (num_frames, grid_h * grid_w))
        concept_keys = layer.concept_keys[0]  # [heads, slots, head_dim]
        concept_outputs = None if layer.concept_outputs is None else layer.concept_outputs[0]
        num_heads, num_slots, head_dim = concept_keys.shape
        rows = self.read_rows.to(out_video.device)
        if self.num_reads == 0:
            shape = (num_frames, grid_h * grid_w, len(rows))
            self.sums = {name: torch.zeros(shape, dtype=torch.float64, device=out_video.device) for name in self.kinds}
        # Heads go in chunks so that each temporary ([heads, slots, frames, patches] float64 at most) stays near
        # CHUNK_BYTES, and small per-head kernels do not dominate on a GPU.
        chunk = max(1, CHUNK_BYTES // (8 * num_frames * grid_h * grid_w * max(num_slots, head_dim)))
        chunks = [slice(start, start + chunk) for start in range(0, num_heads, chunk)]
        head_weights = self._head_weights(out_video, chunks)
        for heads in chunks:
            for term, names in self._by_term.items():
                if term == "gramcol":
                    idx = surrogate_tokens(query_video[heads], concept_keys[heads])  # [chunk, slots, frames]
                    values = zscore_over_slots(gramcol(out_video[heads], idx), self.slot_weights, dim=1)
                    values = values.index_select(1, rows).movedim(1, -1)  # [chunk, frames, patches, concepts]
                elif term == "cross_attention":
                    values = self._cross_attention(query_video[heads], concept_keys[heads], rows)
                else:
                    values = _products(out_video[heads], concept_outputs[heads].index_select(1, rows))
                for name in names:
                    self.sums[name] += torch.tensordot(head_weights[name][heads], values, dims=1)
        self.num_reads += 1

    def _head_weights(self, out_video: torch.Tensor, chunks: list[slice]) -> dict[str, torch.Tensor]:
        """``[heads]`` float64 per kind: its weight on each head. Weights rather than indexing by the selection,
        so a GPU never waits for it; the frame separation only when a kind selects motion heads."""
        num_heads = out_video.shape[0]
        weights = {}
        separation = None
        for name, kind in self.kinds.items():
            if kind.heads == "motion":
                if separation is None:
                    separation = torch.cat([frame_separation(out_video[heads]) for heads in chunks])
                weights[name] = torch.zeros(num_heads, dtype=torch.float64, device=out_video.device)
                weights[name][separation.topk(self.top_k_heads).indices] = 1.0 / self.top_k_heads
            else:
                weights[name] = torch.full((num_heads,), 1.0 / num_heads if kind.heads == "mean" else 1.0,
                                           dtype=torch.float64, device=out_video.device)
        return weights

    def _cross_attention(self, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Each head's cross-attention baseline at the concept rows -> float64 ``[heads, frames, patches, C]``."""
        if not self.keys_attended:  # a concept stream: raw logits, one slot at a time
            return _products(q, k.index_select(1, rows))
        logits = _products(q, k) / q.shape[-1]  # divided by sqrt(d) twice, as the official Wan code does
        weights = self.slot_weights.to(logits)
        logits = logits + weights.log()  # a slot standing for n0 copies weighs n0 times
        # ... and each copy gets a share of its weight (the null row is one padding slot's, as with all slots).
        return logits.softmax(dim=-1).index_select(-1, rows) / weights[rows]

    def maps(self, *, with_null: bool = False) -> dict[str, torch.Tensor]:
        """The kinds asked for: float32 CPU ``[concepts, latent_frames, grid_h, grid_w]``, mean over the read
        layers. ``with_null`` appends the null concept's map, reduced like the concepts' (``[concepts + 1, ...]``):
        what a slot holding no word reads, the contrast a presence decision needs. It is all zeros when the
        read-out has no null row (every text slot holds a concept)."""
        if self.num_reads == 0:
            raise RuntimeError("no map layer was read: run the transformer inside an instrumented forward")
        out = {}
        for name in self.kinds:
            maps = (self.sums[name] / self.num_reads).permute(2, 0, 1).unflatten(2, self.grid[1:]).float().cpu()
            if not with_null:
                maps = maps[:self.num_concepts]
            elif len(self.read_rows) == self.num_concepts:
                maps = torch.cat([maps, maps.new_zeros(1, *maps.shape[1:])])
            out[name] = maps.contiguous()
        return out


def _products(video: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``<video[h, f, p], slots[h, c]>`` -> float64 ``[heads, frames, patches, C]``, computed in at least float32
    (a bfloat16 product would round each value to 3 significant digits before the sum over heads)."""
    dtype = statistics_dtype(torch.promote_types(video.dtype, slots.dtype))
    return torch.einsum("hfpd,hcd->hfpc", video.to(dtype), slots.to(dtype)).double()
