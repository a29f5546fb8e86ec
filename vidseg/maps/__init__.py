"""Attention maps, whatever the backbone: the GramCol statistics, motion-head selection, the registered map kinds
and the read-out that reduces a capture's per-layer tensors to the kinds asked for. Each backbone's capture (its
attention processors) lives with the backbone, in ``vidseg.models.<family>``."""

from vidseg.maps.gramcol import gramcol, surrogate_tokens, zscore_over_slots
from vidseg.maps.heads import frame_separation
from vidseg.maps.kinds import MapKind
from vidseg.maps.readout import LayerReader, LayerTensors, MapReadout, available_kinds, check_map_settings

__all__ = [
    "LayerReader",
    "LayerTensors",
    "MapKind",
    "MapReadout",
    "available_kinds",
    "check_map_settings",
    "frame_separation",
    "gramcol",
    "surrogate_tokens",
    "zscore_over_slots",
]
