"""GramCol: per-frame surrogate tokens, Gram columns and their z-score over concept slots (method.md §6, §7)."""

from __future__ import annotations

import torch

from vidseg.maps.heads import statistics_dtype

ZSCORE_EPS = 1e-6  # added to the standard deviation, as in the official code


def surrogate_tokens(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-frame surrogate token of each concept: the patch whose query matches the concept key best.

    Args:
        q: video queries ``[heads, latent_frames, patches, head_dim]`` (after the q-LayerNorm and RoPE).
        k: concept keys ``[heads, concepts, head_dim]`` (after the k-LayerNorm, no RoPE).

    Returns:
        long ``[heads, concepts, latent_frames]``: ``argmax_p <q[h, f, p], k[h, c]>`` (raw logits; the 1/sqrt(d)
        scale does not move the argmax).
    """
    num_heads, num_frames, num_patches, head_dim = q.shape
    dtype = statistics_dtype(torch.promote_types(q.dtype, k.dtype))
    logits = k.to(dtype) @ q.to(dtype).reshape(num_heads, num_frames * num_patches, head_dim).transpose(1, 2)
    logits = logits.view(num_heads, -1, num_frames, num_patches)  # [heads, concepts, frames, patches]
    return logits.argmax(dim=3)


def gramcol(o: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gram column of each surrogate token within its frame: ``<o[h, f, idx[h, c, f]], o[h, f, p]>``.

    Args:
        o: per-head attention outputs of the video tokens ``[heads, latent_frames, patches, head_dim]``.
        idx: surrogate patch per (head, concept, frame), long ``[heads, concepts, latent_frames]``.

    Returns:
        float64 ``[heads, concepts, latent_frames, patches]``. Only the needed columns are computed: the
        patches x patches Gram matrix is never built. The z-score divides by the spread of these values across
        slots, which can be tiny, so they are computed in float64: a float32 product would depend on the BLAS path
        (the number of slots) in the last bit, and the z-score would amplify that.
    """
    num_heads, num_frames, num_patches, head_dim = o.shape
    num_concepts = idx.shape[1]
    o = o.to(torch.float64)
    # Gather each concept's surrogate feature per frame: [heads, frames, concepts, head_dim].
    gather_idx = idx.transpose(1, 2)[..., None].expand(num_heads, num_frames, num_concepts, head_dim)
    anchors = torch.gather(o, 2, gather_idx)
    # Concepts last in memory, so the z-score over concepts reduces the innermost dimension.
    columns = o.reshape(num_heads * num_frames, num_patches, head_dim) @ anchors.reshape(
        num_heads * num_frames, num_concepts, head_dim
    ).transpose(1, 2)  # [heads * frames, patches, concepts]
    return columns.view(num_heads, num_frames, num_patches, num_concepts).permute(0, 3, 1, 2)


def zscore_over_slots(
    maps: torch.Tensor, slot_weights: torch.Tensor, dim: int = 0, *, dtype: torch.dtype = torch.float64,
    min_variance: float = 0.0,
) -> torch.Tensor:
    """Z-score across concept slots, each slot counted ``slot_weights[s]`` times (method.md §7.2).

    With unit weights this is ``(g - mean) / (std + 1e-6)`` over ``dim`` with the unbiased std. A weight n0 lets
    one slot stand for n0 identical padding slots, which gives the same statistics as repeating it.

    Args:
        maps: float maps with the slots along ``dim``, e.g. ``[slots, latent_frames, patches]``.
        slot_weights: ``[slots]`` positive counts summing to the number of slots represented (>= 2).
        dim: the slot dimension of ``maps``.
        dtype: what the statistics are computed in (float64 by default, see below; training uses float32). No
            operation is in place, so gradients flow through.
        min_variance: a floor on the variance. The read-out keeps 0 (the official formula); training sets a small
            one, since the square root's gradient is infinite where every slot has the same value.

    Returns:
        z-scored maps in ``dtype``, same shape as ``maps``. Where every slot has the same value (all concepts on one
        surrogate), float32 rounding of the mean divided by a near-zero std would turn an exact 0 into noise of
        order 1; float64 statistics keep it 0.
    """
    values = maps.to(dtype).movedim(dim, -1)  # [..., slots]: weighted sums become matrix-vector products
    weights = slot_weights.to(values)
    total = weights.sum()
    mean = values @ weights / total
    centred = values - mean[..., None]
    variance = centred.square() @ weights / (total - 1)
    if min_variance > 0:
        variance = variance.clamp_min(min_variance)
    return (centred / (variance.sqrt() + ZSCORE_EPS)[..., None]).movedim(-1, dim)
