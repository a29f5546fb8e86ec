"""Fixed vocabularies: a dataset's whole class list, and what its GT masks hold for each class.

A vocabulary is what ``vidseg label --classes-from-vocab`` asks every video for (the full-vocabulary protocol, as
training-free open-vocabulary segmenters are scored) and what ``vidseg calibrate`` reads GT masks with. ``vspw`` is
the 124 VSPW classes (their prompt forms; raw mask values 1..124, raw 0 "others" counts as no class). A classes
file holds one class name per line, in mask-value order: the first name is value 1, the next value 2, ...; mask value
0 is the background (no class) and 255 is void. Text after ``#`` is a comment; blank and comment-only lines do not
count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidseg.errors import ConfigError

VOCABULARIES = ("vspw",)
VOID_VALUE = 255


@dataclass(frozen=True)
class Vocabulary:
    """A fixed class list: ``names[k]`` is the class whose GT mask value is ``values[k]``.

    Attributes:
        source: ``vspw`` or the classes file it was read from.
        names: the class names the model is asked for.
        values: each class's raw value in GT masks (other values but void are "no class").
    """

    source: str
    names: tuple[str, ...]
    values: tuple[int, ...]

    def gt_labels(self, raw_mask: np.ndarray) -> np.ndarray:
        """A GT mask ``[H, W]`` uint8 as pipeline labels: 0 no class, k the k-th name (1-based), 255 void."""
        lut = np.zeros(256, dtype=np.uint8)
        lut[list(self.values)] = np.arange(1, len(self.values) + 1, dtype=np.uint8)
        lut[VOID_VALUE] = VOID_VALUE
        return lut[raw_mask]


def load_vocabulary(source: str | Path) -> Vocabulary:
    """``vspw`` or a classes file (module docstring); one clear line when the file is missing or malformed."""
    if str(source) == "vspw":
        from vidseg.datasets.vspw import vspw_classes

        classes = vspw_classes()
        return Vocabulary("vspw", tuple(c.prompt for c in classes), tuple(c.raw_id for c in classes))
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"classes file {path} does not exist; give a file with one class name per line, or "
                          f"{' / '.join(VOCABULARIES)}")
    names = read_classes_file(path)
    if len(names) >= VOID_VALUE:
        raise ConfigError(f"{path} lists {len(names)} classes; mask values 1..254 hold at most 254")
    return Vocabulary(str(path), tuple(names), tuple(range(1, len(names) + 1)))


def read_classes_file(path: str | Path) -> list[str]:
    """The class names of a classes file, in order (comments and blank lines skipped)."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    names = [line for line in lines if line]
    if not names:
        raise ConfigError(f"{path} lists no class names; write one per line")
    return names
