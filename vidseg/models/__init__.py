"""CogVideoX loading (hub id or local folder), the tiny offline model, and the shared transformer forward."""

from vidseg.models.load import CogVideoXModel, default_prompt, load_model
from vidseg.models.tiny import make_tiny_model

__all__ = ["CogVideoXModel", "default_prompt", "load_model", "make_tiny_model"]
