"""Motion-head selection: how well a head's features separate the latent frames (method.md §8)."""

from __future__ import annotations

import torch


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
