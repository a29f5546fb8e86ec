"""Map read-out from CogVideoX attention: IMAP (CHI-selected motion heads) and GramCol (all heads)."""

from vidseg.imap.extract import extract_maps, latent_token_grid
from vidseg.imap.gramcol import gramcol, surrogate_tokens, zscore_over_slots
from vidseg.imap.heads import frame_separation
from vidseg.imap.processor import ConceptStreamAttnProcessor, MapReadout, concept_stream_attention

__all__ = [
    "ConceptStreamAttnProcessor",
    "MapReadout",
    "concept_stream_attention",
    "extract_maps",
    "frame_separation",
    "gramcol",
    "latent_token_grid",
    "surrogate_tokens",
    "zscore_over_slots",
]
