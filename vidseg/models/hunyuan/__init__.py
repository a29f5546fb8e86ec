"""The HunyuanVideo text-to-video family: the backbone, its concept-stream capture in the dual-stream blocks
(``capture``, loaded with the transformer) and its random-weight builders (``parts``)."""

from vidseg.models.hunyuan.backbone import HunyuanBackbone

__all__ = ["HunyuanBackbone"]
