"""``saliency.npz``, the file a ``SaliencyResult`` is saved in: the class maps before any thresholding, for re-running
post-processing offline.

Arrays: ``saliency`` float16 ``[C, F_lat, h, w]`` (classes, latent frames, grid height, grid width) and
``metadata``, a 0-d string array holding a JSON object (class names, prompt, timestep, frame mapping, ...).
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


def write_saliency_npz(path: str | Path, saliency: np.ndarray, metadata: dict[str, Any]) -> Path:
    """Write ``saliency`` ``[C, F_lat, h, w]`` (stored as float16) and JSON ``metadata`` to ``path`` atomically."""
    saliency = np.asarray(saliency)
    if saliency.ndim != 4:
        raise ValueError(f"saliency must be [C, F_lat, h, w], got shape {tuple(saliency.shape)}")
    buffer = io.BytesIO()
    text = json.dumps(json_safe(metadata), allow_nan=False)
    np.savez_compressed(buffer, saliency=saliency.astype(np.float16), metadata=np.array(text))
    return write_bytes_atomic(path, buffer.getvalue())


def read_saliency_npz(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read back ``(saliency [C, F_lat, h, w] float16, metadata)`` written by ``write_saliency_npz``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["saliency"], json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError) as exc:
        raise VidsegError(f"{path} is not a vidseg saliency file ({exc}); write it again with vidseg predict") from None
