"""Backbones (CogVideoX, Wan2.1) loaded from a hub id or local folder; the tiny offline models; the
shared transformer forward."""

from vidseg.models.cogvideox import CogVideoXModel
from vidseg.models.load import Backbone, default_prompt, load_model
from vidseg.models.tiny import make_tiny_model

__all__ = ["Backbone", "CogVideoXModel", "default_prompt", "load_model", "make_tiny_model"]
