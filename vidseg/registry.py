"""Registries: each list of valid values, written once, with what each name stands for.

Their keys drive config validation (``vidseg.config``), the CLI's ``--help`` choices and every "choose one of"
error. A ``Registry`` maps each name to the ``module:attribute`` of its implementation, imported only when used
(``load``), so this module and ``vidseg --help`` stay light; ``Choices`` are plain settings whose values each
stage module reads itself. Adding a backbone family, map kind, upsampler or export format is an entry here plus its
module (``docs/adding-a-backbone.md``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from vidseg.errors import ConfigError


@dataclass(frozen=True)
class Choices:
    """The valid values of one setting, each with a one-line description."""

    setting: str  # the config key the names are for, e.g. "video.resize"
    kind: str  # what a name is, for messages: "resize mode"
    entries: Mapping[str, str]

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __contains__(self, value: object) -> bool:
        return value in self.entries

    def __iter__(self):
        return iter(self.entries)

    def choices(self, last: str = "or") -> str:
        """``"guided, bilinear or anyup"``, for help texts."""
        names = list(self.entries)
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"

    def check(self, value: str, setting: str | None = None) -> str:
        """Return ``value`` if registered, else raise ``ConfigError`` listing the choices (and the closest)."""
        if value in self.entries:
            return value
        close = difflib.get_close_matches(str(value), self.names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{setting or self.setting} is {value!r}, an unknown {self.kind}{hint}; choose one of: "
                          f"{', '.join(self.names())}")


@dataclass(frozen=True)
class Registry(Choices):
    """Names of one kind of choice -> ``module:attribute`` of the implementation."""

    def load(self, name: str) -> Any:
        """The implementation registered as ``name`` (imported now)."""
        module, attribute = self.entries[self.check(name)].split(":")
        return getattr(importlib.import_module(module), attribute)

    def load_all(self) -> dict[str, Any]:
        return {name: self.load(name) for name in self.entries}


# Backbone families: each is a ``vidseg.models.base.Backbone`` that names the diffusers transformer class it reads.
BACKBONES = Registry("model family", "model family", {
    "cogvideox": "vidseg.models.cogvideox:CogVideoXBackbone",
    "wan": "vidseg.models.wan:WanBackbone",
    "hunyuan": "vidseg.models.hunyuan:HunyuanBackbone",
})
# Each a ``vidseg.maps.kinds.MapKind``; a backbone offers the kinds whose needs its capture meets.
MAP_KINDS = Registry("maps.kind", "map kind", {
    "imap": "vidseg.maps.kinds:IMAP",
    "gramcol": "vidseg.maps.kinds:GRAMCOL",
    "cross_attention": "vidseg.maps.kinds:CROSS_ATTENTION",
    "concept_attention": "vidseg.maps.kinds:CONCEPT_ATTENTION",
})
INVERSIONS = Choices("inversion.method", "inversion method", {
    "ddim": "deterministic inversion to the read-out point (DDIM for v-prediction, the flow ODE for flow models)",
    "renoise": "the official IMAP mode: one seeded noising",
})
CONCEPT_SLOTS = Choices("maps.concept_slots", "concept-slot mode", {
    "compact": "the C concepts plus one padding slot standing for all of them (exact)",
    "full": "every text slot literally",
})
UPSAMPLERS = Registry("upsample.method", "upsampler", {
    "guided": "vidseg.upsample.upsamplers:GuidedFilterUpsampler",
    "bilinear": "vidseg.upsample.upsamplers:BilinearUpsampler",
    "anyup": "vidseg.upsample.upsamplers:AnyUpUpsampler",
})
# Each format's writer factory: ExportLayout -> its writers (vidseg.export.writer); make_writers loads them.
EXPORT_FORMATS = Registry("export.format", "export format", {
    "palette": "vidseg.export.palette:palette_writers",
    "vspw": "vidseg.export.vspw:vspw_writers",
    "coco": "vidseg.export.coco:coco_writers",
    "npz": "vidseg.export.npz:npz_writers",
})
RESIZE_MODES = Choices("video.resize", "resize mode", {
    "stretch": "scale each frame to the model size",
    "pad": "keep the aspect ratio and pad (the padding is cropped from the maps)",
})
READERS = Choices("video.reader", "video reader", {
    "auto": "PyAV, or decord when PyAV is not installed",
    "decord": "decord only",
    "pyav": "PyAV only",
})
CALIBRATIONS = Choices("probs.calibration", "calibration", {
    "clip": "one RMS over all classes",
    "class": "each class map divided by its own RMS over the clip",
    "otsu": "each class centred on its Otsu threshold",
    "none": "the raw maps",
})
CRF_MODES = Choices("crf.mode", "CRF mode", {
    "2d": "per frame",
    "3d": "x, y, t and colour over windows of frames",
})
ID_SPACES = Choices("export.id_space", "VSPW id space", {
    "contiguous": "0..123, the VSPW README mapping",
    "raw": "1..124, the raw masks' values",
})
