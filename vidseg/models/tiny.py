"""Tiny random-weight models in diffusers layout, to try and test vidseg offline in seconds.

``make_tiny_model`` writes one of any registered family (its ``parts`` module builds it); the folder loads through
``load_model(directory)`` (and the diffusers pipeline's ``from_pretrained``) exactly like the real checkpoints; its
masks are meaningless. Geometry matches the family's shipped tiny preset (``configs/tiny.yaml``, copied in as
``vidseg.yaml``). The CogVideoX builder at ``TOY_SPEC``'s shape is the starting point of the trained toy model
(``tools/train_toy_model.py``).

The tokenizer is a T5 unigram tokenizer built from a fixed piece list (no download, no training): whole words for
the prompt vocabulary and common object names (every word of the VSPW class names), so different class names get
different first tokens, plus single characters so any other word still tokenises (such words share a first token
when they share a first letter).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from vidseg.errors import OutputError
from vidseg.models.components import quiet_progress_bars

logger = logging.getLogger(__name__)

_PROMPT_WORDS = "A a an and of the with in on video showing scene".split()
_OBJECT_WORDS = """
wall ceiling door stair ladder escalator Playground slide handrail fence window rail goal pillar pole floor ground
grass sand athletic field road path crosswalk building house bridge tower windmill well lid other construction sky
mountain stone wood ice snowfield grandstand sea river lake waterfall water billboard Bulletin Board sculpture
pipeline flag parasol umbrella cushion carpet tent roadblock car bus truck bicycle motorcycle wheeled machine ship
boat raft airplane tyre traffic light lamp person cat dog horse cattle animal tree flower plant toy ball net
backboard skateboard bat cupboard showcase storage rack box traveling case trolley basket bag package trash can cage
plate tub bowl pot bottle cup barrel fishbowl bed pillow table desk chair seat bench sofa shelf bathtub gun commode
roaster refrigerator washing Microwave oven fan curtain textiles clothes painting poster mirror vase clock book tool
blackboard tissue screen television computer printer Mobile phone keyboard electronic product fruit food instrument
train people man woman child bird cow sheep bear elephant zebra giraffe judo mat juggler juggling walking running
""".split()
_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-_()/&"


_TOY_WORDS = "circle square triangle star red green blue yellow purple orange white black pink cyan".split()
_TOY_VERBS = ["sliding", "spinning"]  # the motion toy world's verbs (vidseg.toyworld.VERBS)


def tiny_tokenizer(extra_words: Sequence[str] = (), appended_words: Sequence[str] = ()):
    """T5 unigram tokenizer: a whole word scores higher than spelling it out, so known words stay one piece.

    ``appended_words`` come after the characters, so every earlier piece keeps its id (a model trained before
    they were added reads its captions as before)."""
    from transformers import T5Tokenizer

    words = list(dict.fromkeys(_PROMPT_WORDS + _OBJECT_WORDS + list(extra_words)))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -5.0) for w in words]
    vocab += [("\u2581" + c, -9.0) for c in _CHARACTERS] + [(c, -10.0) for c in _CHARACTERS]
    vocab += [("\u2581" + w, -5.0) for w in appended_words if w not in words]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


@dataclass(frozen=True)
class SmallModelSpec:
    """Shape of a small CogVideoX pipeline built from scratch (the tiny random model, the toy model's start).

    ``num_frames x height x width`` is the clip the shipped preset feeds it; the VAE compresses time by 4 and space
    by 2 ** (len(vae_widths) - 1), and the transformer patches 2 x 2.
    """

    preset: str  # configs/<preset>.yaml, copied into the folder as vidseg.yaml
    num_frames: int
    height: int
    width: int
    heads: int
    head_dim: int
    layers: int
    time_embed_dim: int
    latent_channels: int
    vae_widths: tuple[int, ...]
    vae_groups: int
    text_len: int = 16
    text_dim: int = 32
    extra_words: tuple[str, ...] = ()
    # Words added later (after the characters; their text-encoder rows are drawn after every other weight), so a
    # model trained before them keeps its token ids and weights: the toy model's verbs.
    appended_words: tuple[str, ...] = ()
    # The VAE's tile size; tiles are half of it. None: twice the clip, so the clip is encoded in one piece.
    vae_sample: tuple[int, int] | None = None
    # "random": the VAE's random initialisation; "colour": an encoder set to keep colour locally
    # (colour_keeping_encoder), whose decoder stays random; "colour-motion": the same plus a channel of the
    # luminance change between frames (the toy model's verbs).
    vae_encoder: str = "random"

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.vae_widths) - 1)


# 9 frames at 64 x 96 -> latents 3 x 8 x 12 -> 3 x 4 x 6 = 72 video tokens, 16 text tokens. VAE tiles are half the
# sample size: 48 x 40 px, whose strides under the default overlaps are whole latent cells, so 64 x 96 frames take
# the tiled path like the real model at 480 x 720. (A 64 x 96 sample size would give 32 x 48 px tiles, which turn
# 64 px into 9 latent rows.)
TINY_SPEC = SmallModelSpec(preset="tiny", num_frames=9, height=64, width=96, heads=2, head_dim=16, layers=2,
                           time_embed_dim=16, latent_channels=4, vae_widths=(8, 8, 8, 8), vae_groups=2,
                           vae_sample=(96, 80))
# The toy model (tools/train_toy_model.py): 9 frames at 128 x 192 -> latents 3 x 32 x 48 (VAE / 4) -> a 16 x 24
# token grid per latent frame, so a toy shape covers several tokens.
TOY_SPEC = SmallModelSpec(preset="toy", num_frames=9, height=128, width=192, heads=4, head_dim=16, layers=6,
                          time_embed_dim=64, latent_channels=16, vae_widths=(16, 16, 16), vae_groups=4, text_len=24,
                          extra_words=tuple(_TOY_WORDS), appended_words=tuple(_TOY_VERBS), vae_encoder="colour")


def text_encoder_config(spec: SmallModelSpec, tokenizer: Any) -> dict[str, Any]:
    """A 2-layer T5-style encoder of ``spec.text_dim`` width (T5 for CogVideoX, umT5 for Wan take the same keys)."""
    return dict(vocab_size=max(len(tokenizer), 64), d_model=spec.text_dim, d_kv=8, d_ff=2 * spec.text_dim,
                num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def save_small_pipeline(pipeline: Any, directory: str | Path, preset: str) -> Path:
    """Save ``pipeline`` in diffusers layout (safetensors) with ``configs/<preset>.yaml`` as its ``vidseg.yaml``."""
    directory = Path(directory)
    try:
        if directory.exists():
            shutil.rmtree(directory)
        with quiet_progress_bars():
            pipeline.save_pretrained(directory, safe_serialization=True)
        text = (resources.files("vidseg.configs") / f"{preset}.yaml").read_text()
        (directory / "vidseg.yaml").write_text(text)
    except OSError as exc:
        raise OutputError(f"cannot write the model to {directory}: {exc.strerror}; choose a writable folder") \
            from None
    return directory


def make_tiny_model(directory: str | Path, *, family: str | None = None, rope: bool = False, seed: int = 0) -> Path:
    """Write a random-weight pipeline of ``family`` at ``TINY_SPEC``'s shape (about 0.5 MB) to ``directory`` and
    return its path.

    Args:
        directory: folder to create (or overwrite); gets ``model_index.json``, ``transformer/``, ``vae/``,
            ``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``vidseg.yaml`` (the family's tiny preset).
        family: a ``vidseg.registry.BACKBONES`` name (``cogvideox``, ``wan``); None: the first registered.
        rope: a CogVideoX-5B-like variant (RoPE, DPM scheduler); refused by families without that choice.
        seed: seed of the random weights.
    """
    import importlib

    from vidseg.registry import BACKBONES

    backbone = BACKBONES.load(BACKBONES.check(family or BACKBONES.names()[0], "--family"))
    parts = importlib.import_module(backbone.parts_module)
    path = save_small_pipeline(parts.build_tiny_pipeline(TINY_SPEC, rope=rope, seed=seed), directory,
                               parts.TINY_PRESET)
    logger.info("wrote a tiny random-weight %s%s to %s", backbone.display_name, " (RoPE)" if rope else "", path)
    return path
