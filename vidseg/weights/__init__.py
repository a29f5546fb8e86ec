"""Models shipped inside the package, by name: ``--model toy`` is the small CogVideoX trained on the toy world
(``tools/train_toy_model.py``), stored here in diffusers layout and loaded through the same path as any local folder.

A shipped name that is also an existing local path means that path (``--model ./toy`` reaches a folder named toy).
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODELS = {
    "toy": "a small CogVideoX trained to ground the toy world's shape names (vidseg make-toy-clip clips)",
}


def shipped_model_folder(model: str | Path | None) -> Path | None:
    """The package folder of the shipped model ``model`` names, or None when ``model`` is not a shipped name (or is
    an existing local path)."""
    if model is None or str(model) not in SHIPPED_MODELS or Path(model).exists():
        return None
    return Path(__file__).resolve().parent / str(model)


def model_location(model: str | Path) -> str | Path:
    """Where ``model`` lives: a shipped model's package folder, else ``model`` itself (a folder or a hub id)."""
    return shipped_model_folder(model) or model
