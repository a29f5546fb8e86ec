"""Registries: each list of valid values, written once, with what each name stands for.

Their keys drive config validation (``vidseg.config``), the CLI's ``--help`` choices and every "choose one of"
error; the implementations dispatch on the same keys (``load`` imports a registered ``module:attribute`` only when
it is used, so this module and ``vidseg --help`` stay light). Adding a backbone, upsampler or export format is an
entry here plus its module.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from vidseg.errors import ConfigError


@dataclass(frozen=True)
class Registry:
    """Names of one kind of choice -> ``module:attribute`` of the implementation, or a description where the
    implementation lives in each backbone (map kinds, inversion methods)."""

    setting: str  # the config key the names are for, e.g. "upsample.method"
    kind: str  # what a name is, for messages: "upsampler"
    entries: Mapping[str, str]

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

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

    def load(self, name: str) -> Any:
        """The implementation registered as ``name`` (imported now)."""
        module, attribute = self.entries[self.check(name)].split(":")
        return getattr(importlib.import_module(module), attribute)


# Backbone families, by the transformer class a diffusers folder names (transformer/config.json, model_index.json).
BACKBONES = Registry("model", "model family", {
    "CogVideoXTransformer3DModel": "vidseg.models.cogvideox:CogVideoXModel",
    "WanTransformer3DModel": "vidseg.models.wan:WanModel",
})
MAP_KINDS = Registry("maps.kind", "map kind", {
    "imap": "mean over the motion heads (top-k by frame separation)",
    "gramcol": "sum over all heads",
    "cross_attention": "attention weights of the class token (Wan only; a baseline)",
})
INVERSIONS = Registry("inversion.method", "inversion method", {
    "ddim": "deterministic inversion to the read-out point (DDIM for CogVideoX, the flow ODE for Wan)",
    "renoise": "the official IMAP mode: one seeded noising",
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
