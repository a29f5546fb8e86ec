"""HunyuanVideo (text-to-video, 13 B) as a vidseg backbone: LLaMA text in the default prompt template with CLIP's
pooled embedding, the VAE's scaled latents, flow-ODE inversion or the official renoise on the pipeline's shift-7
grid, the embedded guidance, and the concept-stream read-out in the dual-stream blocks
(``vidseg.models.hunyuan.capture``). docs/hunyuan.md has the official code's facts this follows."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.models.base import TextEmbeddings
from vidseg.models.components import FlowBackbone

logger = logging.getLogger(__name__)

TEXT_SLOTS = 256  # LLaMA tokens after the template crop (HunyuanVideoPipeline's max_sequence_length)
CONCEPT_TOKENS = 16  # each class name is encoded alone in this many tokens after the crop; the first is kept
CLIP_TOKENS = 77
HIDDEN_STATE_FROM_END = 3  # the LLaMA hidden state the transformer reads: hidden_states[-3] (two layers skipped)
GUIDANCE_SCALE = 6.0  # the embedded (distilled) guidance; the transformer takes it times 1000


def prompt_template() -> str:
    """diffusers' default HunyuanVideo prompt template (``{}`` is the caption)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    return DEFAULT_PROMPT_TEMPLATE["template"]


def template_crop(tokenizer: Any, template: str) -> int:
    """How many tokens of a templated text come before the caption: where the token ids of two different captions
    first differ. For the real LLaMA-3 tokenizer this is the template's own ``crop_start`` (95); derived, so a tiny
    model's tokenizer gets its own."""
    a, b = (tokenizer(template.format(word)).input_ids for word in ("a", "b"))
    return next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)


@dataclass(frozen=True)
class HunyuanTextEmbeddings(TextEmbeddings):
    """A caption and its concepts as HunyuanVideo reads them.

    Attributes:
        prompt_embeds: LLaMA ``hidden_states[-3]`` of the templated caption after the crop ``[1, 256, D]`` (padding
            rows are not zero: the mask says which are real).
        concepts: each class name's first token after the crop, encoded alone ``[C, D]``.
        prompt_mask: long ``[1, 256]``, 1 for the caption's tokens.
        pooled: CLIP-L's pooled embedding of the caption ``[1, 768]``.
    """

    prompt_mask: torch.Tensor
    pooled: torch.Tensor


class HunyuanBackbone(FlowBackbone):
    """A HunyuanVideo checkpoint in diffusers layout (``hunyuanvideo-community/HunyuanVideo``):
    ``HunyuanVideoTransformer3DModel``, ``AutoencoderKLHunyuanVideo``, ``FlowMatchEulerDiscreteScheduler`` (shift
    7), the LLaVA-LLaMA-3-8B text encoder and CLIP-L (``text_encoder_2``)."""

    display_name = "HunyuanVideo"
    transformer_class = "HunyuanVideoTransformer3DModel"
    vae_class = "AutoencoderKLHunyuanVideo"
    text_encoder_class = "LlamaModel"
    # A concept stream as in CogVideoX: its keys and outputs, the video's queries and outputs.
    captures = frozenset({"video_outputs", "video_queries", "concept_keys", "concept_outputs"})
    required_subfolders = ("transformer", "vae", "scheduler", "tokenizer", "text_encoder", "tokenizer_2",
                           "text_encoder_2")
    hub_presets = {"hunyuanvideo-community/HunyuanVideo": "hunyuanvideo"}
    parts_module = "vidseg.models.hunyuan.parts"

    def __init__(self, source: str, folder: Any, *, scheduler: Any, **kwargs: Any):
        super().__init__(source, folder, scheduler=PipelineSigmas(scheduler), **kwargs)
        self._tokenizer_2: Any = None  # CLIP's

    @classmethod
    def preset_for(cls, transformer_config: Mapping[str, Any]) -> str:
        return "hunyuanvideo"

    @classmethod
    def check_scheduler(cls, scheduler: Any, model: str) -> None:
        if type(scheduler).__name__ != "FlowMatchEulerDiscreteScheduler":
            raise ModelLoadError(f"{model} uses {type(scheduler).__name__}; vidseg reads HunyuanVideo with its "
                                 "FlowMatchEulerDiscreteScheduler")

    @property
    def spatial_compression(self) -> int:
        return int(self.vae_config.get("spatial_compression_ratio", 8))

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """The shared checks, and no more class names than the concept stream has slots."""
        super().check_settings(config, classes)
        if classes is not None and len(classes) > TEXT_SLOTS:
            raise ConfigError(f"{len(classes)} class names given; {self.display_name} reads at most {TEXT_SLOTS}")

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        return token_grid(self.transformer_config, latents)

    # -- text -----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, prompt: str, classes: Sequence[str]) -> HunyuanTextEmbeddings:
        """The caption through the prompt template (LLaMA, 256 slots and their mask) and CLIP (pooled), and each
        class name through the same template alone, keeping its first token after the crop."""
        (tokenizer, llama), (tokenizer_2, clip) = self._load_text_encoders()
        template = prompt_template()
        crop = template_crop(tokenizer, template)
        length = len(tokenizer(template.format(prompt)).input_ids) - crop
        if length > TEXT_SLOTS:
            logger.warning("the prompt has %d tokens; only the first %d are used", length, TEXT_SLOTS)
        prompt_embeds, mask = llama_embeddings(tokenizer, llama, [prompt], template, crop, TEXT_SLOTS, self.device)
        if classes:
            concepts = llama_embeddings(tokenizer, llama, list(classes), template, crop, CONCEPT_TOKENS,
                                        self.device)[0][:, 0]
        else:
            concepts = prompt_embeds.new_zeros(0, prompt_embeds.shape[-1])
        ids = tokenizer_2([prompt], padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                          return_tensors="pt").input_ids
        pooled = clip(ids.to(self.device), output_hidden_states=False).pooler_output
        return HunyuanTextEmbeddings(prompt_embeds.to(self.dtype), concepts.to(self.dtype), mask,
                                     pooled.to(self.dtype))

    def _load_text_encoders(self) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        """``((LLaMA tokenizer, LLaMA), (CLIP tokenizer, CLIP))``, loading the encoders if needed. Parts built in
        memory (``from_components``) share one tokenizer."""
        if self._text_encoder is None and self._text_encoder_factory is not None:
            self._text_encoder = tuple(encoder.eval() for encoder in self._text_encoder_factory())
        elif self._text_encoder is None:
            import transformers

            llama = self._load("text_encoder", transformers.LlamaModel.from_pretrained, dtype=self.text_dtype)
            clip = self._load("text_encoder_2", transformers.CLIPTextModel.from_pretrained, dtype=self.text_dtype)
            self._text_encoder = (self._place(llama.eval(), "leaf_level"), clip.eval().to(self.device))
        if self._tokenizer_2 is None:
            from transformers import AutoTokenizer

            self._tokenizer_2 = self.tokenizer if self._text_encoder_factory is not None else \
                self._load("tokenizer_2", AutoTokenizer.from_pretrained)
        llama, clip = self._text_encoder
        return (self.tokenizer, llama), (self._tokenizer_2, clip)

    # -- video and the transformer -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] (T = 4k + 1) -> latents ``[1, 16, F, h, w]``: the posterior mode times
        the VAE's scaling factor, as the pipeline's decode assumes (the official code leaves the factor out; see
        docs/hunyuan.md)."""
        T, C, H, W = pixels.shape
        if C != 3 or (T - 1) % 4:
            raise ValueError(f"frames must be [4k+1, 3, H, W] in [-1, 1], got {list(pixels.shape)}")
        video = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)  # [1, 3, T, H, W]
        return self.vae.encode(video).latent_dist.mode().float() * self.vae_config.get("scaling_factor", 0.476986)

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, timestep: float, text: TextEmbeddings) -> torch.Tensor:
        return predict_flow(self.transformer, latents.to(self.dtype), timestep, self._transformer_text(text))

    @torch.no_grad()
    def read_maps(self, noisy: torch.Tensor, timestep: float, text: TextEmbeddings, maps: Any,
                  kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """The concept-stream read-out forward: ``kinds`` maps ``[C + 1, F, h, w]``, the null concept last."""
        from vidseg.models.hunyuan.capture import read_concept_maps

        caption = self._transformer_text(text)
        return read_concept_maps(
            self.transformer, noisy.to(self.dtype), timestep, caption.prompt_embeds, caption.concepts,
            kinds=kinds, layers=maps.layers, top_k_heads=maps.top_k_heads, concept_slots=maps.concept_slots,
            prompt_attention_mask=caption.prompt_mask, pooled_prompt_embeds=caption.pooled, with_null=True)

    def _transformer_text(self, text: TextEmbeddings) -> HunyuanTextEmbeddings:
        """The text on the device, floats in the transformer's dtype (the mask stays long)."""
        def moved(x: torch.Tensor) -> torch.Tensor:
            return x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)

        return dataclasses.replace(text, **{f.name: moved(getattr(text, f.name)) for f in dataclasses.fields(text)})


class PipelineSigmas:
    """The scheduler on the grid ``HunyuanVideoPipeline`` sets: ``set_timesteps(n)`` takes the sigmas
    ``linspace(1, 0, n + 1)[:-1]`` (then shifted) rather than the scheduler's own ``n``-point grid, so index 20 of
    30 is σ = 0.778 as in the official scripts."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler

    def set_timesteps(self, num_steps: int) -> None:
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_steps + 1)[:-1])

    def __getattr__(self, name: str) -> Any:  # sigmas, timesteps, config, ...
        return getattr(self.scheduler, name)


def llama_embeddings(tokenizer: Any, encoder: Any, texts: list[str], template: str, crop: int, slots: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaMA ``hidden_states[-3]`` of each text in ``template``, the first ``crop`` (template) tokens cut:
    ``[len(texts), slots, D]`` and the long mask ``[len(texts), slots]`` (HunyuanVideoPipeline's recipe)."""
    inputs = tokenizer([template.format(t) for t in texts], max_length=slots + crop, padding="max_length",
                       truncation=True, return_tensors="pt", return_attention_mask=True)
    ids, mask = inputs.input_ids.to(device), inputs.attention_mask.to(device)
    hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return hidden[-HIDDEN_STATE_FROM_END][:, crop:], mask[:, crop:]


def token_grid(config: Mapping[str, Any], latents: torch.Tensor) -> tuple[int, int, int]:
    """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents [B, C, F, H, W]``."""
    p, p_t = config.get("patch_size", 2), config.get("patch_size_t", 1)
    _, _, num_frames, height, width = latents.shape
    return num_frames // p_t, height // p, width // p


def predict_flow(transformer: Any, latents: torch.Tensor, timestep: float, text: HunyuanTextEmbeddings, *,
                 guidance: float = GUIDANCE_SCALE * 1000) -> torch.Tensor:
    """HunyuanVideo's flow prediction for ``latents [B, C, F, H, W]`` at ``timestep`` (σ * 1000), with the
    embedded ``guidance`` (guidance scale * 1000, one forward, no unconditional pass); returns ``[B, C, F, H, W]``
    in the latents' dtype.

    Both scalars go in float32, whatever the model's dtype: their sinusoidal embeddings are computed in float32
    from them, and a bfloat16 value moves them (a bfloat16 timestep 194.4 is 194; a bfloat16 guidance 6000 is
    6016). ``HunyuanVideoPipeline`` passes the timestep in float32 too, but the guidance in the transformer's dtype;
    vidseg keeps it exact so that a bfloat16 run reads what a float32 one reads (docs/hunyuan.md)."""
    batch = latents.shape[0]
    t = torch.full((batch,), float(timestep), device=latents.device, dtype=torch.float32)
    guidance = torch.full((batch,), float(guidance), device=latents.device, dtype=torch.float32)
    return transformer(hidden_states=latents, timestep=t, encoder_hidden_states=text.prompt_embeds.to(latents.dtype),
                       encoder_attention_mask=text.prompt_mask, pooled_projections=text.pooled.to(latents.dtype),
                       guidance=guidance, return_dict=False)[0]
