"""CogVideoX (2B, 5B) as a vidseg backbone: T5 text, the VAE's scaled latents, the v-prediction (with the RoPE a
custom loop must pass itself), DDIM inversion or the official renoise, and the concept-stream read-out
(``vidseg.models.cogvideox.capture``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.inversion import invert_ddim, readout_timestep, renoise_ddim
from vidseg.models.base import TextEmbeddings
from vidseg.models.components import DiffusersBackbone

logger = logging.getLogger(__name__)

# Each class name is encoded on its own in a sequence of this many tokens; only its first token is kept.
CONCEPT_MAX_TOKENS = 16


class CogVideoXBackbone(DiffusersBackbone):
    """A CogVideoX checkpoint: transformer, VAE and scheduler (``CogVideoXDDIMScheduler`` for 2B,
    ``CogVideoXDPMScheduler`` for 5B), plus T5 text encoding."""

    display_name = "CogVideoX"
    transformer_class = "CogVideoXTransformer3DModel"
    vae_class = "AutoencoderKLCogVideoX"
    text_encoder_class = "T5EncoderModel"
    captures = frozenset({"video_outputs", "video_queries", "concept_keys", "concept_outputs"})
    frame_multiple = 8
    hub_presets = {"THUDM/CogVideoX-2b": "cogvideox-2b", "THUDM/CogVideoX-5b": "cogvideox-5b"}
    parts_module = "vidseg.models.cogvideox.parts"
    # DDIM inversion (v-prediction) and the official single noising.
    invert, renoise = staticmethod(invert_ddim), staticmethod(renoise_ddim)

    @classmethod
    def preset_for(cls, transformer_config: Mapping[str, Any]) -> str:
        return "cogvideox-5b" if transformer_config.get("num_layers") == 42 else "cogvideox-2b"

    @classmethod
    def check_scheduler(cls, scheduler: Any, model: str) -> None:
        if not hasattr(scheduler, "alphas_cumprod") or scheduler.config.get("prediction_type") != "v_prediction":
            raise ModelLoadError(
                f"{model} uses {type(scheduler).__name__} with prediction "
                f"{scheduler.config.get('prediction_type')!r}; vidseg needs a v-prediction DDIM-type scheduler "
                "(CogVideoXDDIMScheduler / CogVideoXDPMScheduler)")

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.vae_config.get("block_out_channels", (0,) * 4)) - 1)

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """The shared checks, and no more class names than the model has text slots."""
        super().check_settings(config, classes)
        slots = self.transformer_config["max_text_seq_length"]
        if classes is not None and len(classes) > slots:
            raise ConfigError(f"{len(classes)} class names given; {self.source} reads at most {slots} (its text "
                              f"slots)")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Latents of a ``num_frames x height x width`` clip in the transformer's layout ``[1, F, C, h, w]``."""
        scale, channels = self.spatial_compression, self.transformer_config["in_channels"]
        return 1, (num_frames - 1) // self.temporal_compression + 1, channels, height // scale, width // scale

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        return token_grid(self.transformer_config, latents)

    def readout_timestep(self, inversion: Any) -> int:
        """The read-out timestep of ``inversion`` (an ``InversionConfig``): t = 399 for index 30 of 50."""
        return readout_timestep(self.scheduler, inversion.num_steps, inversion.readout_index)

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> TextEmbeddings:
        """T5 embeddings of the prompt ``[1, 226, D]`` (padded / truncated as the CogVideoX pipeline does) and of
        each class name's first token ``[C, D]`` (method.md §5.1), in ``dtype`` on ``device``; loads T5 if needed."""
        tokenizer, encoder = self._load_text_encoder()
        text_len = int(self.transformer_config["max_text_seq_length"])
        prompt_embeds, concept_embeds = t5_embeddings(
            tokenizer, encoder, prompt, classes, text_len=text_len, device=self.device
        )
        return TextEmbeddings(prompt_embeds.to(self.dtype), concept_embeds.to(self.dtype))

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] -> clean latents in the transformer's layout ``[1, F, C, h, w]``."""
        return encode_frames(self.vae, pixels.to(self.device, self.dtype))

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, timestep: float, text: TextEmbeddings) -> torch.Tensor:
        return predict_velocity(self.transformer, latents.to(self.dtype), int(timestep),
                                text.prompt_embeds.to(self.device, self.dtype))

    @torch.no_grad()
    def read_maps(self, noisy: torch.Tensor, timestep: float, text: TextEmbeddings, maps: Any,
                  kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """The concept-stream read-out forward: ``kinds`` maps ``[C + 1, F, h, w]`` on the token grid, the null
        concept last."""
        from vidseg.models.cogvideox.capture import read_concept_maps

        return read_concept_maps(
            self.transformer, noisy.to(self.dtype), int(timestep), text.prompt_embeds.to(self.device, self.dtype),
            text.concepts.to(self.device, self.dtype), kinds=kinds, layers=maps.layers,
            top_k_heads=maps.top_k_heads, concept_slots=maps.concept_slots, with_null=True,
        )


def t5_embeddings(
    tokenizer: Any, encoder: Any, prompt: str, classes: Sequence[str], *, text_len: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 embeddings of a prompt and of each class name, as CogVideoX reads them (method.md §5.1).

    The prompt is padded / truncated to ``text_len`` tokens (the transformer's ``max_text_seq_length``, 226 for
    the real models), as the CogVideoX pipeline does. Each class name is tokenised and encoded on its own
    (``CONCEPT_MAX_TOKENS`` tokens) and only the embedding of its first token is kept.

    Returns:
        ``prompt_embeds [1, text_len, text_dim]`` and ``concept_embeds [concepts, text_dim]`` on ``device``
        (default: where the encoder's weights are; pass the execution device for an offloaded encoder).
    """
    device = device or next(encoder.parameters()).device
    full_len = len(tokenizer(prompt, add_special_tokens=True).input_ids)
    if full_len > text_len:
        logger.warning("the prompt has %d tokens; only the first %d are used", full_len, text_len)
    ids = tokenizer(prompt, padding="max_length", max_length=text_len, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids
    prompt_embeds = encoder(ids.to(device))[0]  # [1, text_len, text_dim]
    if classes:
        ids = tokenizer(list(classes), padding="max_length", max_length=CONCEPT_MAX_TOKENS, truncation=True,
                        add_special_tokens=True, return_tensors="pt").input_ids
        concept_embeds = encoder(ids.to(device))[0][:, 0]  # first token of each: [concepts, text_dim]
    else:
        concept_embeds = prompt_embeds.new_zeros(0, prompt_embeds.shape[-1])
    return prompt_embeds, concept_embeds


@torch.no_grad()
def encode_frames(vae: Any, frames: torch.Tensor) -> torch.Tensor:
    """Encode one clip with the CogVideoX VAE, deterministically.

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


def token_grid(config: Mapping[str, Any], latents: torch.Tensor) -> tuple[int, int, int]:
    """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents [B, F, C, H, W]`` by a
    transformer with ``config`` (its config.json)."""
    _, num_frames, _, height, width = latents.shape
    if config.get("patch_size_t") is not None:  # CogVideoX 1.5 also patches time
        num_frames //= config["patch_size_t"]
    return num_frames, height // config["patch_size"], width // config["patch_size"]


def rotary_embedding(transformer: Any, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """RoPE (cos, sin) for ``latents`` [B, F, C, H, W], or None for models without RoPE (CogVideoX-2B).

    diffusers computes RoPE in the pipeline, not the transformer, so a custom loop must do it itself or 5B is
    silently wrong. Mirrors CogVideoXPipeline._prepare_rotary_positional_embeddings.
    """
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

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
    return transformer(
        hidden_states=latents,
        encoder_hidden_states=prompt_embeds.to(latents.dtype),
        timestep=t,
        image_rotary_emb=rotary_embedding(transformer, latents),
        attention_kwargs=attention_kwargs,
        return_dict=False,
    )[0]
