"""``saliency.npz``, the file a ``SaliencyResult`` is saved in: the class maps before any thresholding, for re-running
post-processing offline.

Arrays: ``saliency`` float16 ``[C, F_lat, h, w]`` (classes, latent frames, grid height, grid width), ``null`` float16
``[F_lat, h, w]`` (the null concept's map, which presence decisions compare each class with; absent from older
files) and ``metadata``, a 0-d string array holding a JSON object (class names, prompt,
timestep, frame mapping, ...).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import VidsegError
from vidseg.files import json_safe, write_bytes_atomic

SALIENCY_FILE = "saliency.npz"


def write_saliency_npz(path: str | Path, saliency: np.ndarray, metadata: dict[str, Any], *,
                       null: np.ndarray | None = None) -> Path:
    """Write ``saliency`` ``[C, F_lat, h, w]``, the null concept's map ``null`` ``[F_lat, h, w]`` (both stored as
    float16) and JSON ``metadata`` to ``path`` atomically."""
    saliency = np.asarray(saliency)
    if saliency.ndim != 4:
        raise ValueError(f"saliency must be [C, F_lat, h, w], got shape {tuple(saliency.shape)}")
    arrays = {"saliency": saliency.astype(np.float16)}
    if null is not None:
        if np.shape(null) != saliency.shape[1:]:
            raise ValueError(f"null must be [F_lat, h, w] = {saliency.shape[1:]}, got shape {np.shape(null)}")
        arrays["null"] = np.asarray(null).astype(np.float16)
    buffer = io.BytesIO()
    text = json.dumps(json_safe(metadata), allow_nan=False)
    np.savez_compressed(buffer, **arrays, metadata=np.array(text))
    return write_bytes_atomic(path, buffer.getvalue())


def read_saliency_npz(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read back ``(saliency [C, F_lat, h, w] float16, metadata)`` written by ``write_saliency_npz``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["saliency"], json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError) as exc:
        raise VidsegError(f"{path} is not a vidseg saliency file ({exc}); write it again with vidseg predict") from None


def read_null_maps(path: str | Path) -> np.ndarray | None:
    """The null concept's map ``[F_lat, h, w]`` float16 from a ``saliency.npz``, None in a file without one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["null"] if "null" in data.files else None
    except (OSError, ValueError) as exc:
        raise VidsegError(f"{path} is not a vidseg saliency file ({exc}); write it again with vidseg predict") from None
