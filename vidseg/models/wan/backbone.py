"""Wan2.1 (T2V 1.3B, 14B) as a vidseg backbone: umT5 text with 512 slots, the VAE's normalised latents, flow-ODE
inversion or the official renoise, and the cross-attention read-out (``vidseg.models.wan.capture``). method.md §19."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.models.base import TextEmbeddings
from vidseg.models.components import FlowBackbone

TEXT_SLOTS = 512  # umT5 prompt length of the Wan pipelines


def concept_positions(tokenizer: Any, prompt: str, classes: Sequence[str]) -> list[int]:
    """Each class name's map row in a Wan prompt: the position of its first sub-token inside ``prompt``.

    A name matches case-insensitively as whole words (``traffic_light`` as "traffic light"), at its first
    occurrence. Raises ``ConfigError`` naming a class the prompt does not contain.
    """
    encoded = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True, truncation=True,
                        max_length=TEXT_SLOTS)
    offsets = encoded["offset_mapping"]
    positions = []
    for name in classes:
        words = name.replace("_", " ").strip()
        match = re.search(rf"(?<!\w){re.escape(words)}(?!\w)", prompt, flags=re.IGNORECASE)
        token = None
        if match is not None:
            token = next((i for i, (start, end) in enumerate(offsets)
                          if end > match.start() and start < match.end() and end > start), None)
        if token is None:
            raise ConfigError(f"class {name!r} is not in the prompt {prompt!r}; name every class in --prompt "
                              f"(its map is the class's first token there), or leave --prompt out")
        positions.append(token)
    return positions


class WanBackbone(FlowBackbone):
    """A Wan2.1 text-to-video checkpoint: ``WanTransformer3DModel``, ``AutoencoderKLWan``, a flow-matching scheduler
    (``UniPCMultistepScheduler`` with flow sigmas), plus umT5 text encoding."""

    display_name = "Wan2.1"
    example_size = "480x832"
    transformer_class = "WanTransformer3DModel"
    vae_class = "AutoencoderKLWan"
    text_encoder_class = "UMT5EncoderModel"
    # No concept stream, so no concept_outputs; attn2's keys are the prompt's, which the video queries attend to
    # (the capture's MapReadout(keys_attended=True)).
    captures = frozenset({"video_outputs", "video_queries", "concept_keys"})
    hub_presets = {"Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "wan2.1-1.3b", "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan2.1-14b"}
    parts_module = "vidseg.models.wan.parts"

    @classmethod
    def preset_for(cls, transformer_config: Mapping[str, Any]) -> str:
        return "wan2.1-14b" if transformer_config.get("num_layers") == 40 else "wan2.1-1.3b"

    @classmethod
    def check_scheduler(cls, scheduler: Any, model: str) -> None:
        if scheduler.config.get("prediction_type") != "flow_prediction" or not hasattr(scheduler, "sigmas"):
            raise ModelLoadError(
                f"{model} uses {type(scheduler).__name__} with prediction "
                f"{scheduler.config.get('prediction_type')!r}; vidseg needs Wan's flow-matching scheduler "
                "(UniPCMultistepScheduler or FlowMatchEulerDiscreteScheduler with flow_prediction)")

    @property
    def spatial_compression(self) -> int:  # each down stage halves the size (the list says which also halve time)
        return 2 ** len(self.vae_config.get("temperal_downsample", (False, True, True)))

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """The shared checks, and every class name inside a user's ``--prompt`` (the tokenizer only)."""
        super().check_settings(config, classes)
        if classes is not None and config.inversion.prompt:
            concept_positions(self.tokenizer, config.inversion.prompt, classes)

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        return token_grid(self.transformer_config, latents)

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> TextEmbeddings:
        """umT5 embeddings of the prompt ``[1, 512, D]`` (real tokens, then exact zeros, as ``WanPipeline`` makes
        them) and the long ``[C]`` prompt positions of the class names; loads umT5 if needed (after the class
        names are checked against the prompt, which needs the tokenizer only)."""
        positions = concept_positions(self.tokenizer, prompt, classes)
        tokenizer, encoder = self._load_text_encoder()
        inputs = tokenizer(prompt, padding="max_length", max_length=TEXT_SLOTS, truncation=True,
                           add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = inputs.input_ids.to(self.device), inputs.attention_mask.to(self.device)
        embeds = encoder(ids, mask).last_hidden_state
        length = int(mask.sum())
        embeds[:, length:] = 0  # the pipeline keeps the real tokens and pads with exact zeros
        return TextEmbeddings(embeds.to(self.dtype), torch.tensor(positions, dtype=torch.long))

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] (T = 4k + 1) -> normalised latents ``[1, C, F, h, w]``:
        (posterior mode - latents_mean) / latents_std, as ``WanVideoToVideoPipeline`` does."""
        T, C, H, W = pixels.shape
        if C != 3 or (T - 1) % 4:
            raise ValueError(f"frames must be [4k+1, 3, H, W] in [-1, 1], got {list(pixels.shape)}")
        video = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)  # [1, 3, T, H, W]
        latents = self.vae.encode(video).latent_dist.mode().float()
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.vae_config["latents_mean"], device=latents.device).view(shape)
        std = torch.tensor(self.vae_config["latents_std"], device=latents.device).view(shape)
        return (latents - mean) / std

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, timestep: float, text: TextEmbeddings) -> torch.Tensor:
        return predict_flow(self.transformer, latents.to(self.dtype), timestep,
                            text.prompt_embeds.to(self.device, self.dtype))

    @torch.no_grad()
    def read_maps(self, noisy: torch.Tensor, timestep: float, text: TextEmbeddings, maps: Any,
                  kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """The instrumented forward: ``kinds`` maps ``[C + 1, F, h, w]`` on the token grid, the null concept last."""
        from vidseg.models.wan.capture import read_cross_attention_maps

        return read_cross_attention_maps(
            self.transformer, noisy.to(self.dtype), timestep, text.prompt_embeds.to(self.device, self.dtype),
            text.concepts, kinds=kinds, layers=maps.layers, top_k_heads=maps.top_k_heads,
            concept_slots=maps.concept_slots, with_null=True)


def token_grid(config: Mapping[str, Any], latents: torch.Tensor) -> tuple[int, int, int]:
    """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents [B, C, F, H, W]`` by a
    transformer with ``config`` (its config.json)."""
    p_t, p_h, p_w = config["patch_size"]
    _, _, num_frames, height, width = latents.shape
    return num_frames // p_t, height // p_h, width // p_w


def predict_flow(transformer: Any, latents: torch.Tensor, timestep: float, prompt_embeds: torch.Tensor) -> torch.Tensor:
    """Wan's flow prediction (noise minus data) for ``latents`` [B, C, F, H, W] at ``timestep`` (σ * 1000).

    ``prompt_embeds`` is the umT5 prompt [B, 512, D]; Wan computes its RoPE inside the transformer. Returns
    [B, C, F, H, W] in the latents' dtype.
    """
    t = torch.full((latents.shape[0],), float(timestep), device=latents.device)
    return transformer(hidden_states=latents, timestep=t, encoder_hidden_states=prompt_embeds.to(latents.dtype),
                       return_dict=False)[0]
