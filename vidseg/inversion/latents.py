"""Frames to the transformer's latent layout with the CogVideoX VAE."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def encode_frames(vae: Any, frames: torch.Tensor) -> torch.Tensor:
    """Encode one clip with the VAE, deterministically.

    Args:
        vae: ``AutoencoderKLCogVideoX`` (tiling / slicing as set up by ``load_model``).
        frames: ``[frames, 3, height, width]`` in [-1, 1]; frames must be 8k+1 (or 1), height and width multiples
            of 8 (of 16 for the transformer's 2 x 2 patches).

    Returns:
        ``[1, latent_frames, latent_channels, height / 8, width / 8]`` float32 (the transformer's [B, F, C, H, W]
        layout): the posterior **mode** times ``vae.config.scaling_factor``, with
        ``latent_frames = (frames - 1) / 4 + 1``.
    """
    T, C, H, W = frames.shape
    if C != 3 or (T != 1 and (T - 1) % 8):
        raise ValueError(f"frames must be [8k+1, 3, H, W] in [-1, 1] (e.g. 49 frames), got {list(frames.shape)}")
    param = next(vae.parameters())
    video = frames.permute(1, 0, 2, 3).unsqueeze(0)  # VAE layout [1, 3, T, H, W]
    video = video.to(device=param.device, dtype=param.dtype)
    latents = vae.encode(video).latent_dist.mode() * vae.config.scaling_factor  # [1, C_lat, F, h, w]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if latents.shape[-2:] != (H // scale, W // scale):
        # diffusers' tiled encode only lines up when its tile strides are whole latent cells.
        raise ValueError(f"the VAE returned {tuple(latents.shape[-2:])} latents for {H}x{W} frames instead of "
                         f"{(H // scale, W // scale)}; its tiling settings do not fit, load the model without tiling")
    return latents.permute(0, 2, 1, 3, 4).float()  # transformer layout [1, F, C_lat, h, w]
