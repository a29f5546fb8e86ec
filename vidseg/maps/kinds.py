"""The map kinds: what each one sums over heads, how it weighs the heads, and what it needs from a capture.

A backbone's capture hands every map layer's per-head tensors to ``vidseg.maps.readout.MapReadout`` (a
``LayerTensors``); each kind asked for is reduced from them, and nothing else is computed. A kind is available on a
backbone when the backbone's capture provides everything the kind ``needs`` (``Backbone.captures``).

What a capture can provide:
- ``video_outputs``: per-head attention outputs of the video tokens (before the output projection);
- ``video_queries``: video queries after the q-norm (and RoPE);
- ``concept_keys``: each concept slot's key after the k-norm;
- ``concept_outputs``: each concept slot's per-head attention output (before the output projection) in a concept
  stream that attends over [concept slots ; video tokens] (CogVideoX). A backbone whose concepts are prompt tokens
  of a text cross-attention (Wan) has no such stream.

The cross-attention baseline follows what the backbone's concept keys are (method.md §10): keys of the very
attention the video queries run (Wan's ``attn2``) give the mean over heads of a softmax over the slots of the
logits divided by sqrt(d) twice; keys of a concept stream the video never attends to (CogVideoX) give the raw
logits, unscaled, mean over heads. The capture tells the read-out which (``MapReadout(keys_attended=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = ("gramcol", "cross_attention", "concept_attention")
HEAD_WEIGHTS = ("motion", "all", "mean")


@dataclass(frozen=True)
class MapKind:
    """One kind of map, reduced per layer from the captured tensors and averaged over layers.

    Attributes:
        term: the per-head quantity summed: ``gramcol`` (Gram columns of the surrogate tokens z-scored over the
            slots, method.md §6-§7), ``cross_attention`` (each video query against each slot's key, §10) or
            ``concept_attention`` (each video token's output against each slot's concept-stream output, §10).
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
CROSS_ATTENTION = MapKind("cross_attention", "mean", frozenset({"video_queries", "concept_keys"}),
                          "each video query against the class key, mean over heads (a baseline)")
# The official ``concept_attention_maps_layers``: a baseline (ConceptAttention without its softmax over concepts).
CONCEPT_ATTENTION = MapKind("concept_attention", "all", frozenset({"video_outputs", "concept_outputs"}),
                            "each video output against the class's concept-stream output, sum over heads (a "
                            "baseline)")
