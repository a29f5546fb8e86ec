"""The backbone contract: everything the pipeline, the inverters, the benchmarks and the tests' stand-ins may ask of
a video diffusion transformer. Only a backbone knows its family; nothing else asks which one it is.

A family is one subpackage of ``vidseg.models`` (``cogvideox``, ``wan``) registered in ``vidseg.registry.BACKBONES``:
its ``Backbone`` subclass (this contract, usually through ``vidseg.models.components.DiffusersBackbone``), its
capture (the attention processors that hand ``vidseg.maps.LayerTensors`` to the read-out) and its ``parts`` module
(random-weight builders for the tiny models and the real geometries). See ``docs/adding-a-backbone.md``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from vidseg.maps.readout import available_kinds

# ``on_step(i, n)``: called after inversion step i of n (1-based), e.g. for a progress bar.
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TextEmbeddings:
    """A caption and its concepts (class names), encoded the way one backbone reads them.

    Attributes:
        prompt_embeds: the caption's text-encoder output ``[1, text_len, D]`` as the transformer takes it.
        concepts: what the read-out maps. CogVideoX: each class name's first-token embedding ``[C, D]``; Wan2.1: the
            long ``[C]`` positions of the class names inside the prompt. Families that need more (several encoders,
            a pooled embedding, a mask) subclass this.
    """

    prompt_embeds: torch.Tensor
    concepts: torch.Tensor

    def to(self, device: torch.device | str) -> "TextEmbeddings":
        """The same embeddings on ``device`` (dtypes kept), e.g. the CPU to hand them to another process."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self)})


class Backbone(ABC):
    """A video diffusion transformer as vidseg uses it: encode text and video, bring latents to the read-out point,
    read the maps; plus what settings it accepts and how it is shown.

    Attributes:
        source: what was asked for (hub id, path or geometry name), for messages and ``labels.json``.
        device: where the model runs. dtype: the transformer's dtype.
    """

    display_name: ClassVar[str] = ""  # in messages: "CogVideoX"
    transformer_class: ClassVar[str] = ""  # the diffusers class in transformer/config.json this family reads
    # What the family's capture hands the read-out (see vidseg.maps.kinds); it decides the map kinds offered.
    captures: ClassVar[frozenset[str]] = frozenset()
    temporal_compression: ClassVar[int] = 4  # video frames per latent frame (after the first)
    frame_multiple: ClassVar[int] = 4  # a window holds frame_multiple * k + 1 frames
    example_size: ClassVar[str] = "480x720"  # a size that fits, for messages
    # Folders a diffusers checkpoint of this family must have.
    required_subfolders: ClassVar[tuple[str, ...]] = ("transformer", "vae", "scheduler", "tokenizer", "text_encoder")
    hub_presets: ClassVar[Mapping[str, str]] = {}  # published hub id -> preset in configs/
    parts_module: ClassVar[str] = ""  # the family's random-weight builders (vidseg.models.geometry, .tiny)
    # Progress label of each inversion method.
    stage_labels: ClassVar[Mapping[str, str]] = {"ddim": "DDIM inversion", "renoise": "renoise"}

    source: str
    device: torch.device
    dtype: torch.dtype

    @property
    def map_kinds(self) -> tuple[str, ...]:
        """The map kinds this backbone's capture can give."""
        return available_kinds(self.captures)

    @classmethod
    @abstractmethod
    def preset_for(cls, transformer_config: Mapping[str, Any]) -> str:
        """The preset in ``configs/`` that fits a checkpoint of this family with this transformer config."""

    @abstractmethod
    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        """Raise ``ConfigError`` for settings (a ``vidseg.config.VidsegConfig``) or class names that contradict
        the model, from its config files alone: nothing heavy is loaded."""

    @abstractmethod
    def encode_text(self, prompt: str, classes: Sequence[str]) -> TextEmbeddings:
        """Encode the caption and the class names, in ``dtype`` on ``device``."""

    @abstractmethod
    def release_text_encoder(self) -> None:
        """Free the text encoder; ``encode_text`` loads it again when needed."""

    @abstractmethod
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, 3, H, W]`` in [-1, 1] -> clean latents in the transformer's layout."""

    @abstractmethod
    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """Latents of a ``num_frames x height x width`` clip, in the transformer's layout."""

    @abstractmethod
    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        """``(latent_frames, grid_h, grid_w)`` of the video tokens made from ``latents``."""

    @abstractmethod
    def predict(self, latents: torch.Tensor, timestep: float, text: TextEmbeddings) -> torch.Tensor:
        """The stock transformer prediction for ``latents`` at ``timestep`` (what the inverters integrate)."""

    @abstractmethod
    def readout_timestep(self, inversion: Any) -> float:
        """The transformer's timestep at the read-out point of ``inversion`` (a ``vidseg.config.InversionConfig``)."""

    @abstractmethod
    def noise_to_readout(self, latents: torch.Tensor, text: TextEmbeddings, inversion: Any, *,
                         on_step: StepCallback | None = None) -> tuple[torch.Tensor, float]:
        """Bring clean latents to the read-out point (``inversion.method``); returns ``(noisy, timestep)``."""

    @abstractmethod
    def read_maps(self, noisy: torch.Tensor, timestep: float, text: TextEmbeddings, maps: Any,
                  kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        """The instrumented forward: ``{kind: [C + 1, latent_frames, grid_h, grid_w]}`` float32 CPU maps for each
        of ``kinds``, read with ``maps`` (a ``vidseg.config.MapsConfig``: layers, motion heads, concept slots): the
        C classes, then the null concept (a text slot holding no word, read like the classes), which the presence
        decision compares each class with."""

    def inversion_steps(self, inversion: Any) -> int | None:
        """How many model evaluations ``noise_to_readout`` makes (a progress total), None when it makes none."""
        return inversion.num_steps - inversion.readout_index if inversion.method == "ddim" else None
