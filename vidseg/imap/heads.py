"""Motion-head selection: how well a head's features separate the latent frames (method.md §8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vidseg.errors import ConfigError


def statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed in: at least float32, so bf16 / fp16 features keep their precision."""
    return torch.promote_types(dtype, torch.float32)


def frame_separation(x: torch.Tensor) -> torch.Tensor:
    """Calinski-Harabasz index of each head's video tokens, with the latent frame as the cluster label.

    Args:
        x: per-head features ``[heads, latent_frames, patches, head_dim]`` (any float dtype, any device),
            ``latent_frames >= 2``.

    Returns:
        ``[heads]`` in float32 (float64 for float64 input), on ``x``'s device. Equals scikit-learn's
        ``calinski_harabasz_score(x[h].reshape(-1, head_dim), repeat(arange(latent_frames), patches))``,
        including its convention of 1.0 when every frame is a single point.
    """
    num_heads, num_frames, num_patches, _ = x.shape
    if num_frames < 2:
        raise ValueError(f"frame_separation needs at least 2 latent frames, got {num_frames}")
    x = x.to(statistics_dtype(x.dtype))
    frame_means = x.mean(dim=2)  # [heads, frames, head_dim]
    # Frames hold equally many tokens, so the global mean is the mean of the frame means.
    global_mean = frame_means.mean(dim=1, keepdim=True)  # [heads, 1, head_dim]
    between = num_patches * (frame_means - global_mean).square().sum(dim=(1, 2))  # tr(S_B), [heads]
    # tr(S_W) from centred tokens rather than sum|x|^2 - P sum|mu_f|^2, which cancels badly in float32.
    within = (x - frame_means[:, :, None]).square().sum(dim=(1, 2, 3))  # [heads]
    num_tokens = num_frames * num_patches
    score = between * (num_tokens - num_frames) / (within * (num_frames - 1))
    return torch.where(within > 0, score, torch.ones_like(score))


def check_layers_and_heads(layers: Sequence[int], top_k: int, *, num_blocks: int, num_heads: int) -> list[int]:
    """Validate map layers and the motion-head count against a model's depth and heads; returns the sorted,
    de-duplicated layers. Raises ``ConfigError`` naming the setting."""
    if len(layers) == 0:
        raise ConfigError("maps.layers is empty; give at least one transformer block index")
    missing = [i for i in layers if not 0 <= i < num_blocks]
    if missing:
        raise ConfigError(f"map layers {missing} do not exist: the model has blocks 0..{num_blocks - 1}; "
                          f"fix maps.layers")
    if not 1 <= top_k <= num_heads:
        raise ConfigError(f"maps.top_k_heads is {top_k}; it must be between 1 and the model's {num_heads} heads")
    return sorted(set(layers))
