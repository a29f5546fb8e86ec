"""VSPW's 124 classes and label conventions, in one place.

Raw masks hold 0 = "others", 1..124 = classes, 255 = void. Two id spaces circulate (``reference.md`` §3.3):

* ``contiguous`` (default): the dataset README mapping. Raw 1..124 → ids 0..123; raw 0 and 255 → 255 (ignored).
  Predictions hold 0..123.
* ``raw``: the official ``evaluator_test.py`` feeds raw masks straight into a 124-class evaluator: raw 0 ("others")
  is scored as class 0 and raw 124 (``train``) is never counted. Predictions hold raw values (class id + 1).

The class table (raw name, prompt-friendly form) ships as ``configs/vspw.yaml`` (package ``vidseg.configs``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml
from PIL import Image

from vidseg.errors import ConfigError, DatasetError
from vidseg.registry import ID_SPACES

NUM_CLASSES = 124
IGNORE_ID = 255
OTHERS_NAME = "others"  # raw value 0: scored as a class only in the raw id space


@dataclass(frozen=True)
class VspwClass:
    """One VSPW class: contiguous ``id`` (0..123), raw VSPW ``name`` and the ``prompt`` text fed to the model."""

    id: int
    name: str
    prompt: str

    @property
    def raw_id(self) -> int:
        """The value this class has in raw VSPW masks (id + 1)."""
        return self.id + 1


@lru_cache(maxsize=1)
def vspw_classes() -> tuple[VspwClass, ...]:
    """The 124 classes in contiguous-id order, read from the shipped ``vspw.yaml``."""
    text = (resources.files("vidseg.configs") / "vspw.yaml").read_text()
    rows = yaml.safe_load(text)["classes"]
    classes = tuple(VspwClass(int(r["id"]), str(r["name"]), str(r["prompt"])) for r in rows)
    if [c.id for c in classes] != list(range(NUM_CLASSES)):
        raise ConfigError("the shipped vspw.yaml must list ids 0..123 in order; reinstall vidseg")
    return classes


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def alternatives(raw_name: str) -> list[str]:
    """The names an ``a_or_b`` VSPW class goes by: ``bottle_or_cup`` -> ["bottle", "cup"]; others: the name."""
    return [part for part in raw_name.split("_or_") if part]


@lru_cache(maxsize=1)
def _name_index() -> dict[str, int]:
    """Normalised raw names, prompt forms and each alternative of ``a_or_b`` names → contiguous id."""
    index: dict[str, int] = {}
    for c in vspw_classes():
        for key in (c.name, c.prompt, *alternatives(c.name)):
            if index.setdefault(_normalise(key), c.id) != c.id:
                raise ConfigError(f"vspw.yaml maps {key!r} to two classes; reinstall vidseg")
    return index


def class_id(name: str) -> int:
    """Contiguous id (0..123) of the VSPW class a user's name means: its raw name (``handrail_or_fence``), its
    prompt form (``fence``) or any alternative of an ``a_or_b`` name (``cup`` → ``bottle_or_cup``).

    Case, underscores and spaces do not matter. Unknown names raise ConfigError naming the closest classes.
    """
    key = _normalise(name)
    index = _name_index()
    if key in index:
        return index[key]
    classes = vspw_classes()
    close = difflib.get_close_matches(key, list(index), n=6, cutoff=0.6)
    suggestions = list(dict.fromkeys(
        key if _normalise(classes[index[key]].name) == key else f"{key} ({classes[index[key]].name})"
        for key in close))[:3]
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    raise ConfigError(f"{name!r} is not a VSPW class{hint} (vidseg classes lists all 124)")


def check_id_space(id_space: str) -> str:
    return ID_SPACES.check(id_space)


def export_id(class_idx: int, id_space: str = "contiguous") -> int:
    """The value written for contiguous class id ``class_idx``: itself (contiguous) or id + 1 (raw)."""
    return class_idx + (1 if check_id_space(id_space) == "raw" else 0)


def export_id_range(id_space: str = "contiguous") -> tuple[int, int]:
    """Inclusive range of class values an export may hold: 0..123 (contiguous) or 1..124 (raw)."""
    low = export_id(0, id_space)
    return low, low + NUM_CLASSES - 1


def label_to_vspw_ids(class_names: Sequence[str], id_space: str = "contiguous") -> np.ndarray:
    """Map pipeline labels to VSPW values: ``[C + 1]`` int16, entry 0 (background) = -1, entry k = class k's value.

    The -1 tells ``VspwMaskWriter`` to resolve background pixels to a class (never write 255).
    """
    ids = [export_id(class_id(n), id_space) for n in class_names]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two of the classes {list(class_names)} are the same VSPW class; list each once")
    return np.array([-1, *ids], dtype=np.int16)


def gt_as_evaluated(raw_mask: np.ndarray, id_space: str = "contiguous") -> np.ndarray:
    """The GT mask ``[H, W]`` uint8 as the official scripts see it in ``id_space``.

    contiguous: the README mapping (0 → 255, v → v − 1, then 254 → 255), so values are 0..123 or 255 (raw values
    above 124, which VSPW never holds, become 255 too: the official evaluator ignores them either way).
    raw: unchanged (the confusion matrix then counts only values below 124, as ``evaluator_test.py`` does).
    """
    if check_id_space(id_space) == "raw":
        return raw_mask
    return _README_LUT[raw_mask]


# README mapping as a lookup table over all 256 raw values.
_README_LUT = np.full(256, IGNORE_ID, dtype=np.uint8)
_README_LUT[1:NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)


def eval_class_names(id_space: str = "contiguous") -> list[str]:
    """Name of each confusion-matrix row: the 124 classes (contiguous), or ``others`` + 124 raw names (raw)."""
    names = [c.name for c in vspw_classes()]
    return [OTHERS_NAME, *names] if check_id_space(id_space) == "raw" else names


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel ('L' or 'P') mask PNG as ``[H, W]`` uint8 (palette indices are kept, never converted)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DatasetError(f"{path} is a mode-{image.mode} image; masks must be single-channel 8-bit PNGs")
            return np.array(image)
    except OSError as exc:
        raise DatasetError(f"cannot read mask {path}: {exc}") from None


def gt_class_ids(mask_paths: Iterable[str | Path]) -> list[int]:
    """Contiguous ids of the VSPW classes present in raw GT masks (raw 0 "others" and 255 void excluded), sorted."""
    present = np.zeros(256, dtype=bool)
    for path in mask_paths:
        present[np.unique(read_mask(path))] = True
    raw = np.flatnonzero(present[1:NUM_CLASSES + 1]) + 1
    return [int(v) - 1 for v in raw]


def gt_class_prompts(mask_paths: Iterable[str | Path]) -> list[str]:
    """Prompt forms of the VSPW classes present in raw GT masks (``--classes-from-gt``, the zero-shot protocol)."""
    classes = vspw_classes()
    return [classes[i].prompt for i in gt_class_ids(mask_paths)]
