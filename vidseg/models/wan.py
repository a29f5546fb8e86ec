"""Wan2.1 (T2V 1.3B, 14B) as a vidseg backbone: umT5 text with 512 slots, the VAE's normalised latents, flow-ODE
inversion or the official renoise, and the cross-attention read-out (``vidseg.imap.wan``). method.md §19."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.models.load import Backbone

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


class WanModel(Backbone):
    """A Wan2.1 text-to-video checkpoint: ``WanTransformer3DModel``, ``AutoencoderKLWan``, a flow-matching scheduler
    (``UniPCMultistepScheduler`` with flow sigmas), plus umT5 text encoding."""

    family = "wan"
    display_name = "Wan2.1"
    example_size = "480x832"
    transformer_class = "WanTransformer3DModel"
    vae_class = "AutoencoderKLWan"
    text_encoder_class = "UMT5EncoderModel"
    map_kinds = ("imap", "gramcol", "cross_attention")
    inversion_labels = {"ddim": "flow inversion", "renoise": "renoise"}

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

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Latents of a ``num_frames x height x width`` clip in the transformer's layout ``[1, C, F, h, w]``."""
        scale = self.spatial_compression
        return 1, self.transformer_config["in_channels"], (num_frames - 1) // 4 + 1, height // scale, width // scale

    def readout_timestep(self, inversion: Any) -> float:
        """The transformer's timestep (σ * 1000) at ``inversion``'s read-out index (818 for index 20 of 50)."""
        from vidseg.inversion import flow_grid

        return flow_grid(self.scheduler, inversion.num_steps, inversion.readout_index)[1][inversion.readout_index]

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
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
        return embeds.to(self.dtype), torch.tensor(positions, dtype=torch.long)

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

    def inversion_functions(self) -> tuple[Any, Any]:
        """Flow-ODE inversion (what ``method: ddim`` means for a flow model) and the official renoise, both to
        ``sigmas[readout_index]``."""
        from vidseg.inversion import invert_flow, renoise_flow

        return invert_flow, renoise_flow

    @torch.no_grad()
    def read_maps(
        self, noisy: torch.Tensor, timestep: float, prompt_embeds: torch.Tensor, concepts: torch.Tensor, maps: Any
    ) -> dict[str, torch.Tensor]:
        """The instrumented forward: ``{"imap", "gramcol", "cross_attention"}`` maps ``[C, F, h, w]``."""
        from vidseg.imap import extract_maps

        return extract_maps(self.transformer, noisy.to(self.dtype), timestep,
                            prompt_embeds.to(self.device, self.dtype), concepts, layers=maps.layers,
                            top_k=maps.top_k_heads, concept_slots=maps.concept_slots)
