"""``DiffusersBackbone``: a backbone over a diffusers checkpoint, loaded part by part, with the text encoder loaded
only while needed, and the checks every such family shares.

Memory plan: ``vidseg.models.hub.load_model`` reads configs and the scheduler only and checks that the weights are
there. The text encoder (T5 / umT5) is loaded by the first ``encode_text`` call, and ``release_text_encoder`` frees
it. The transformer and the VAE are loaded and moved to the device on first access of ``model.transformer`` /
``model.vae``. So encoding all texts, releasing the encoder, then running the model never holds the text encoder
(4.8 B parameters for the real models) and the transformer at the same time.

The text encoder runs in bfloat16 (the dtype it is distributed and used in) except when float32 is asked for on a
GPU; on a CPU this halves its 19 GB float32 footprint. It never runs in float16, where T5 overflows.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vidseg.errors import ConfigError, ModelLoadError, first_line
from vidseg.inversion import flow_grid, invert_flow, renoise_flow
from vidseg.maps.readout import check_map_settings
from vidseg.models.base import Backbone, StepCallback, TextEmbeddings
from vidseg.models.hub import model_hint

logger = logging.getLogger(__name__)


class DiffusersBackbone(Backbone):
    """The lazy-loading base of the diffusers families: subclasses name their classes and implement the text,
    video, prediction and read-out parts of the contract.

    Attributes:
        folder: the local diffusers folder the weights come from.
        offload, vae_tiling: as given to ``load_model``.
        scheduler: the checkpoint's scheduler.
        preset_path: the folder's ``vidseg.yaml`` (settings shipped with the model, e.g. the tiny model's), or None.
        transformer_config, vae_config: the config.json files as dicts (available without loading the weights).
    """

    vae_class = ""
    text_encoder_class = ""
    # The family's inverters, with the signatures of vidseg.inversion.invert_ddim and renoise_ddim.
    invert: Callable[..., tuple[torch.Tensor, float]]
    renoise: Callable[..., tuple[torch.Tensor, float]]

    def __init__(self, source: str, folder: Path, *, device: torch.device, dtype: torch.dtype, offload: bool,
                 vae_tiling: bool, scheduler: Any, transformer_config: dict[str, Any], vae_config: dict[str, Any]):
        self.source = source
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.vae_tiling = vae_tiling
        self.scheduler = scheduler
        self.transformer_config = transformer_config
        self.vae_config = vae_config
        preset = folder / "vidseg.yaml"
        self.preset_path: Path | None = preset if preset.is_file() else None
        self.text_dtype = torch.float32 if dtype == torch.float32 and device.type != "cpu" else torch.bfloat16
        self._transformer: Any = None
        self._vae: Any = None
        self._tokenizer: Any = None
        self._text_encoder: Any = None
        self._text_encoder_factory: Callable[[], Any] | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, device={self.device}, dtype={self.dtype}, "
                f"offload={self.offload})")

    @classmethod
    def from_components(cls, source: str, *, transformer: Any, vae: Any, text_encoder: Callable[[], Any],
                        tokenizer: Any, scheduler: Any, device: torch.device, dtype: torch.dtype) -> "DiffusersBackbone":
        """A backbone over modules already in memory (e.g. ``vidseg.models.geometry.stand_in_model``'s random
        real-shape parts) instead of a folder; it runs exactly like a loaded one. ``text_encoder`` builds the
        encoder, which is then freed and rebuilt like a loaded one."""
        model = cls(source, Path(source), device=device, dtype=dtype, offload=False, vae_tiling=True,
                    scheduler=scheduler, transformer_config=dict(transformer.config), vae_config=dict(vae.config))
        model._transformer, model._vae = transformer.eval(), vae.eval()
        model._text_encoder_factory, model._tokenizer = text_encoder, tokenizer
        return model

    @classmethod
    def check_scheduler(cls, scheduler: Any, model: str) -> None:
        """Raise ``ModelLoadError`` when ``scheduler`` is not one this backbone can invert with."""

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent cell along each side (8 for the real VAEs)."""
        raise NotImplementedError

    @property
    def patch_size(self) -> int:
        """Latent cells per token along each side."""
        patch = self.transformer_config.get("patch_size", 2)
        return patch[-1] if isinstance(patch, (list, tuple)) else patch

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """Settings that contradict the checkpoint, from its config files alone (no weights loaded): the map kind,
        map layers, motion heads and concept slots, the frame count and the frame size. Families add their own
        checks."""
        t, v, maps = self.transformer_config, config.video, config.maps
        check_map_settings((maps.kind,), maps.layers, maps.top_k_heads, maps.concept_slots,
                           num_blocks=t["num_layers"], num_heads=t["num_attention_heads"], captures=self.captures,
                           model=self.display_name)
        step = self.frame_multiple
        if v.num_frames < step + 1 or (v.num_frames - 1) % step:
            raise ConfigError(f"video.num_frames is {v.num_frames}; the {self.display_name} VAE needs {step}k+1 "
                              f"frames, e.g. 49")
        multiple = self.spatial_compression * self.patch_size
        if v.height % multiple or v.width % multiple:
            raise ConfigError(f"video size {v.height}x{v.width}: {self.source} needs multiples of {multiple} "
                              f"(VAE and patches), e.g. {self.example_size}")

    @torch.no_grad()
    def noise_to_readout(self, latents: torch.Tensor, text: TextEmbeddings, inversion: Any, *,
                         on_step: StepCallback | None = None) -> tuple[torch.Tensor, float]:
        """Deterministic inversion (``method: ddim``) or the official single noising (``renoise``) to the read-out
        point, with the family's ``invert`` / ``renoise`` (``vidseg.inversion``)."""
        if inversion.method == "ddim":
            return self.invert(lambda z, t: self.predict(z, t, text), self.scheduler, latents,
                               num_steps=inversion.num_steps, readout_index=inversion.readout_index, on_step=on_step)
        return self.renoise(self.scheduler, latents, num_steps=inversion.num_steps,
                            readout_index=inversion.readout_index, seed=inversion.seed)

    @property
    def transformer(self) -> Any:
        """The transformer in ``dtype`` on ``device`` (weights on the CPU with ``offload``)."""
        if self._transformer is None:
            import diffusers

            loader = getattr(diffusers, self.transformer_class).from_pretrained
            transformer = self._load("transformer", loader, dtype=self.dtype)
            self._transformer = self._place(transformer.eval(), "block_level")
        return self._transformer

    @property
    def vae(self) -> Any:
        """The VAE in ``dtype`` on ``device``, with slicing (and tiling when configured)."""
        if self._vae is None:
            import diffusers

            vae = self._load("vae", getattr(diffusers, self.vae_class).from_pretrained, dtype=self.dtype)
            vae.enable_slicing()
            if self.vae_tiling:
                vae.enable_tiling()
            self._vae = vae.eval().to(self.device)
        return self._vae

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (small; loading it loads no weights)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = self._load("tokenizer", AutoTokenizer.from_pretrained)
        return self._tokenizer

    def release_text_encoder(self) -> None:
        """Free the text encoder (host and GPU memory). ``encode_text`` loads it again if called later."""
        if self._text_encoder is None:
            return
        self._text_encoder = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        logger.debug("released the text encoder of %s", self.source)

    def _load_text_encoder(self) -> tuple[Any, Any]:
        if self._text_encoder is None and self._text_encoder_factory is not None:
            self._text_encoder = self._text_encoder_factory().eval()
        elif self._text_encoder is None:
            import transformers

            loader = getattr(transformers, self.text_encoder_class).from_pretrained
            encoder = self._load("text_encoder", loader, dtype=self.text_dtype)
            self._text_encoder = self._place(encoder.eval(), "leaf_level")
        return self.tokenizer, self._text_encoder

    def _load(self, subfolder: str, loader: Any, **kwargs: Any) -> Any:
        try:
            with quiet_progress_bars():
                return loader(str(self.folder), subfolder=subfolder, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot load the {subfolder} of {self.source}: {first_line(exc)}; "
                                 f"re-download the model or {model_hint()}") from None

    def _place(self, module: Any, offload_type: str) -> Any:
        """Move to the device, or with ``offload`` on a GPU keep weights on the CPU and move each block (or, for the
        text encoder, each layer) to the GPU while it runs."""
        if not (self.offload and self.device.type == "cuda"):
            return module.to(self.device)
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(module, onload_device=self.device, offload_type=offload_type,
                               num_blocks_per_group=1 if offload_type == "block_level" else None, use_stream=True)
        return module


class FlowBackbone(DiffusersBackbone):
    """A flow-matching family with latents in the ``[1, C, F, h, w]`` layout (Wan2.1, HunyuanVideo): flow-ODE
    inversion (what ``method: ddim`` means for a flow model) or the official renoise, both to
    ``sigmas[readout_index]`` of the scheduler's grid."""

    stage_labels = {"ddim": "flow inversion", "renoise": "renoise"}
    invert, renoise = staticmethod(invert_flow), staticmethod(renoise_flow)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Latents of a ``num_frames x height x width`` clip in the transformer's layout ``[1, C, F, h, w]``."""
        scale, frames = self.spatial_compression, (num_frames - 1) // self.temporal_compression + 1
        return 1, self.transformer_config["in_channels"], frames, height // scale, width // scale

    def readout_timestep(self, inversion: Any) -> float:
        """The transformer's timestep (σ * 1000) at ``inversion``'s read-out index (Wan: 818 for index 20 of 50;
        HunyuanVideo: 778 for index 20 of 30)."""
        return flow_grid(self.scheduler, inversion.num_steps, inversion.readout_index)[1][inversion.readout_index]


@contextmanager
def swapped_processors(transformer: Any, processors: dict[str, Any], hooks: Sequence[Any] = ()) -> Iterator[None]:
    """Run the ``with`` block with ``processors`` (attention-processor name -> processor) in place of the stock ones;
    on exit, even after an error, remove ``hooks`` (handles of hooks the caller registered) and put every original
    processor back. The model itself is never edited."""
    original = transformer.attn_processors
    try:
        transformer.set_attn_processor({**original, **processors})
        yield
    finally:
        for hook in hooks:
            hook.remove()
        transformer.set_attn_processor(dict(original))


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' and diffusers' per-file loading / saving bars (the CLI draws its own progress);
    restores their previous state."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in states:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in states:
            if enabled:
                lib.enable_progress_bar()
