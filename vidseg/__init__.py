"""vidseg: segment real videos by class name with no training, from a video diffusion transformer's own attention
(IMAP / GramCol).

Public API: ``VideoSegmenter`` (model pass + export), ``load_config`` / ``VidsegConfig`` (settings), and the
stage modules ``vidseg.models`` (backbones), ``vidseg.maps``, ``vidseg.refine``, ``vidseg.video``, ``vidseg.evaluation``.
"""

from __future__ import annotations

from typing import Any

from vidseg.version import __version__

__all__ = ["VideoSegmenter", "SaliencyResult", "VidsegConfig", "load_config", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import vidseg` (and `vidseg --help`) stays fast and does not pull in torch or diffusers.
    if name == "VideoSegmenter":
        from vidseg.pipeline import VideoSegmenter

        return VideoSegmenter
    if name == "SaliencyResult":
        from vidseg.result import SaliencyResult

        return SaliencyResult
    if name in ("VidsegConfig", "load_config"):
        from vidseg import config

        return getattr(config, name)
    raise AttributeError(f"module 'vidseg' has no attribute {name!r}")
