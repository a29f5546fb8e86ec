"""Backbones: the contract (``base``), the lazy diffusers loading every family shares (``components``), opening a
checkpoint (``hub``), captions (``text``), the tiny offline models (``tiny``) and real-shape stand-ins
(``geometry``); one subpackage per family (``cogvideox``, ``wan``), registered in ``vidseg.registry.BACKBONES``."""

from vidseg.models.base import Backbone, TextEmbeddings
from vidseg.models.hub import load_model
from vidseg.models.text import default_prompt
from vidseg.models.tiny import make_tiny_model

__all__ = ["Backbone", "TextEmbeddings", "default_prompt", "load_model", "make_tiny_model"]
