"""The map kinds: what each one sums over heads, how it weighs the heads, and what it needs from a capture.

A backbone's capture hands every map layer's per-head tensors to ``vidseg.maps.readout.MapReadout`` (a
``LayerTensors``); each kind asked for is reduced from them, and nothing else is computed. A kind is available on a
backbone when the backbone's capture provides everything the kind ``needs`` (``Backbone.captures``).

What a capture can provide:
- ``video_outputs``: per-head attention outputs of the video tokens (before the output projection);
- ``video_queries``: video queries after the q-norm (and RoPE);
- ``concept_keys``: each concept slot's key after the k-norm;
- ``attended_concept_keys``: the concept keys are keys of the very attention the video queries run (Wan's text
  cross-attention), so a softmax over them is the model's own attention weights. A concept stream that only reads
  the video (CogVideoX) does not provide it.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = ("gramcol", "attention")
HEAD_WEIGHTS = ("motion", "all", "mean")


@dataclass(frozen=True)
class MapKind:
    """One kind of map, reduced per layer from the captured tensors and averaged over layers.

    Attributes:
        term: the per-head quantity summed: ``gramcol`` (Gram columns of the surrogate tokens z-scored over the
            slots, method.md §6-§7) or ``attention`` (each video token's softmax over the slots).
        heads: how heads are weighed: ``motion`` (mean over the ``top_k_heads`` heads that separate the latent
            frames best, method.md §8), ``all`` (sum over every head) or ``mean`` (mean over every head).
        needs: what the capture must provide (see the module docstring).
        description: one line for help texts.
    """

    term: str
    heads: str
    needs: frozenset[str]
    description: str

    def __post_init__(self) -> None:
        assert self.term in TERMS and self.heads in HEAD_WEIGHTS, (self.term, self.heads)


_GRAMCOL_NEEDS = frozenset({"video_outputs", "video_queries", "concept_keys"})

# The official ``sel_imap_layers``.
IMAP = MapKind("gramcol", "motion", _GRAMCOL_NEEDS, "mean over the motion heads (top-k by frame separation)")
# The official ``imap_layers``.
GRAMCOL = MapKind("gramcol", "all", _GRAMCOL_NEEDS, "sum over all heads")
# The official ``cross_attention_maps_layers``: a baseline.
CROSS_ATTENTION = MapKind("attention", "mean", frozenset({"video_queries", "concept_keys", "attended_concept_keys"}),
                          "the model's attention weights on the class token (a baseline)")
