"""COCO RLE: one JSON per video with a record per (frame, class present), as COCO-stuff / detectron2 semantic results.

Layout (loadable with ``pycocotools.coco.COCO``)::

    {"info": {...},
     "images": [{"id": frame_idx, "file_name": "<frame name>", "height": H, "width": W}, ...],
     "categories": [{"id": k, "name": "<k-th class>"}, ...],          # k = label value, 1..C
     "annotations": [{"id": n, "image_id": frame_idx, "category_id": k,
                      "segmentation": {"size": [H, W], "counts": "<compressed RLE, ASCII>"},
                      "area": pixels, "bbox": [x, y, w, h], "iscrowd": 0}, ...]}

Background (label 0) gets no record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vidseg.errors import MissingDependencyError
from vidseg.export._labels import check_labels, resize_labels
from vidseg.export.writer import ExportLayout, Writer
from vidseg.files import write_json_atomic

COCO_FILE = "coco_rle.json"


def _mask_api() -> Any:
    try:
        from pycocotools import mask as mask_api
    except ImportError:
        raise MissingDependencyError("the coco format needs pycocotools; pip install pycocotools") from None
    return mask_api


class CocoRleWriter(Writer):
    """Collects RLE records frame by frame and writes the JSON at ``close()`` (atomically).

    ``size`` = (height, width) resizes every map with nearest neighbour first (``None`` keeps its size).
    """

    consumes = frozenset({"labels"})

    def __init__(self, path: str | Path, class_names: Sequence[str], *, size: tuple[int, int] | None = None,
                 info: dict[str, Any] | None = None):
        self._mask_api = _mask_api()
        self.path = Path(path)
        self.class_names = list(class_names)
        self.size = size
        self._info = dict(info or {})
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []

    def add(self, frame_idx: int, name: str, labels: np.ndarray, frame: np.ndarray | None = None) -> None:
        labels = resize_labels(check_labels(labels), self.size)
        height, width = labels.shape
        self._images.append({"id": int(frame_idx), "file_name": name, "height": height, "width": width})
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(self.class_names) + 1))
        for label in present[present > 0]:
            if label > len(self.class_names):
                raise ValueError(f"frame {name}: label {label} has no class (only {len(self.class_names)} classes)")
            rle = self._mask_api.encode(np.asfortranarray(labels == label, dtype=np.uint8))
            self._annotations.append({
                "id": len(self._annotations) + 1,
                "image_id": int(frame_idx),
                "category_id": int(label),
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": int(self._mask_api.area(rle)),
                "bbox": [float(v) for v in self._mask_api.toBbox(rle)],
                "iscrowd": 0,
            })

    def close(self) -> None:
        doc = {
            "info": {"description": "vidseg semantic segmentation, one record per (frame, class present)",
                     **self._info},
            "images": self._images,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(self.class_names)],
            "annotations": self._annotations,
        }
        write_json_atomic(self.path, doc)


def coco_writers(layout: ExportLayout) -> list[Writer]:
    """The ``coco`` format: ``coco_rle.json``."""
    return [CocoRleWriter(layout.out_dir / COCO_FILE, layout.class_names, size=layout.size)]
