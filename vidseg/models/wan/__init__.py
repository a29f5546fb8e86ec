"""The Wan2.1 text-to-video family (1.3B, 14B): the backbone, its cross-attention capture (``capture``, loaded with
the transformer) and its random-weight builders (``parts``)."""

from vidseg.models.wan.backbone import WanBackbone

__all__ = ["WanBackbone"]
