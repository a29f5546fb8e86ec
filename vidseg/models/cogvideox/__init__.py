"""The CogVideoX family (2B, 5B): the backbone, its concept-stream capture (``capture``, loaded with the transformer)
and its random-weight builders (``parts``)."""

from vidseg.models.cogvideox.backbone import CogVideoXBackbone

__all__ = ["CogVideoXBackbone"]
