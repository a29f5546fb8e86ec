"""CogVideoX (2B, 5B) as a vidseg backbone: T5 text, the VAE's scaled latents, DDIM inversion or the official
renoise, and the concept-stream read-out (``vidseg.imap``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.models.load import Backbone, t5_embeddings


class CogVideoXModel(Backbone):
    """A CogVideoX checkpoint: transformer, VAE and scheduler (``CogVideoXDDIMScheduler`` for 2B,
    ``CogVideoXDPMScheduler`` for 5B), plus T5 text encoding."""

    family = "cogvideox"
    display_name = "CogVideoX"
    frame_step = 8
    transformer_class = "CogVideoXTransformer3DModel"
    vae_class = "AutoencoderKLCogVideoX"
    text_encoder_class = "T5EncoderModel"
    map_kinds = ("imap", "gramcol")

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
        return 1, (num_frames - 1) // 4 + 1, channels, height // scale, width // scale

    def readout_timestep(self, inversion: Any) -> int:
        """The read-out timestep of ``inversion`` (an ``InversionConfig``): t = 399 for index 30 of 50."""
        from vidseg.inversion import readout_timestep

        return readout_timestep(self.scheduler, inversion.num_steps, inversion.readout_index)

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings of the prompt ``[1, 226, D]`` (padded / truncated as the CogVideoX pipeline does) and of
        each class name's first token ``[C, D]`` (method.md §5.1), in ``dtype`` on ``device``; loads T5 if needed."""
        tokenizer, encoder = self._load_text_encoder()
        text_len = int(self.transformer_config["max_text_seq_length"])
        prompt_embeds, concept_embeds = t5_embeddings(
            tokenizer, encoder, prompt, classes, text_len=text_len, device=self.device
        )
        return prompt_embeds.to(self.dtype), concept_embeds.to(self.dtype)

    # -- the backbone interface the pipeline composes (vidseg.pipeline.VideoSegmenter.window_saliency) ---------------

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] -> clean latents in the transformer's layout ``[1, F, C, h, w]``."""
        from vidseg.inversion import encode_frames

        return encode_frames(self.vae, pixels.to(self.device, self.dtype))

    def inversion_functions(self) -> tuple[Any, Any]:
        """DDIM inversion (v-prediction) and the official renoise."""
        from vidseg.inversion import invert_video, renoise_video

        return invert_video, renoise_video

    @torch.no_grad()
    def read_maps(
        self, noisy: torch.Tensor, timestep: int, prompt_embeds: torch.Tensor, concept_embeds: torch.Tensor,
        maps: Any,
    ) -> dict[str, torch.Tensor]:
        """The instrumented read-out forward: ``{"imap", "gramcol"}`` maps ``[C, F, h, w]`` on the token grid.

        ``maps`` is a ``vidseg.config.MapsConfig`` (layers, motion heads, concept slots).
        """
        from vidseg.imap import extract_maps

        return extract_maps(
            self.transformer, noisy.to(self.dtype), timestep, prompt_embeds.to(self.device, self.dtype),
            concept_embeds.to(self.device, self.dtype), layers=maps.layers, top_k=maps.top_k_heads,
            concept_slots=maps.concept_slots,
        )
