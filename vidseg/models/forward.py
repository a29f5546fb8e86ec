"""One transformer evaluation, shared by inversion and map reading so both pass RoPE the same way."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from diffusers.models.embeddings import get_3d_rotary_pos_embed


def rotary_embedding(transformer: Any, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """RoPE (cos, sin) for ``latents`` [B, F, C, H, W], or None for models without RoPE (CogVideoX-2B).

    diffusers computes RoPE in the pipeline, not the transformer, so a custom loop must do it itself or 5B is
    silently wrong. Mirrors CogVideoXPipeline._prepare_rotary_positional_embeddings.
    """
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    _, num_latent_frames, _, latent_h, latent_w = latents.shape
    p, p_t = cfg.patch_size, cfg.patch_size_t
    grid_h, grid_w = latent_h // p, latent_w // p
    base_h, base_w = cfg.sample_height // p, cfg.sample_width // p
    if p_t is None:  # CogVideoX 1.0
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim,
            crops_coords=get_resize_crop_region_for_grid((grid_h, grid_w), base_w, base_h),
            grid_size=(grid_h, grid_w),
            temporal_size=num_latent_frames,
            device=latents.device,
        )
    else:  # CogVideoX 1.5
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim,
            crops_coords=None,
            grid_size=(grid_h, grid_w),
            temporal_size=(num_latent_frames + p_t - 1) // p_t,
            grid_type="slice",
            max_size=(base_h, base_w),
            device=latents.device,
        )
    return cos, sin


def predict_velocity(
    transformer: Any,
    latents: torch.Tensor,
    timestep: int,
    prompt_embeds: torch.Tensor,
    *,
    attention_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """The transformer's v-prediction for ``latents`` [B, F, C, H, W] at integer ``timestep``.

    ``prompt_embeds`` [B, T, D] is the T5 output; returns [B, F, C, H, W] in the latents' dtype.
    """
    t = torch.full((latents.shape[0],), int(timestep), device=latents.device, dtype=torch.long)
    out = transformer(
        hidden_states=latents,
        encoder_hidden_states=prompt_embeds.to(latents.dtype),
        timestep=t,
        image_rotary_emb=rotary_embedding(transformer, latents),
        attention_kwargs=attention_kwargs,
        return_dict=False,
    )[0]
    return out


def predict_flow(transformer: Any, latents: torch.Tensor, timestep: float, prompt_embeds: torch.Tensor) -> torch.Tensor:
    """Wan's flow prediction (noise minus data) for ``latents`` [B, C, F, H, W] at ``timestep`` (σ * 1000).

    ``prompt_embeds`` is the umT5 prompt [B, 512, D]; Wan computes its RoPE inside the transformer. Returns
    [B, C, F, H, W] in the latents' dtype.
    """
    t = torch.full((latents.shape[0],), float(timestep), device=latents.device)
    return transformer(hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds.to(latents.dtype),
                       return_dict=False)[0]
