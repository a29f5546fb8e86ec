"""The ``npz`` format: the soft saliency only (``vidseg.saliency_file``). Every export folder holds
``saliency.npz`` (``SaliencyNpzWriter``); the ``npz`` format writes nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vidseg.export.writer import ExportLayout, Writer
from vidseg.saliency_file import SALIENCY_FILE, read_saliency_npz, write_saliency_npz

if TYPE_CHECKING:
    from vidseg.result import SaliencyResult

__all__ = ["SALIENCY_FILE", "SaliencyNpzWriter", "npz_writers", "read_saliency_npz", "write_saliency_npz"]


class SaliencyNpzWriter(Writer):
    """``saliency.npz``: the video's window maps and what ``SaliencyResult.load`` needs to rebuild the result."""

    consumes = frozenset({"maps"})

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def add_maps(self, result: SaliencyResult) -> None:
        result.save(self.path)


def npz_writers(layout: ExportLayout) -> list[Writer]:
    """The ``npz`` format: no label files. Its output, ``saliency.npz``, is in every export folder."""
    return []
