"""A tiny random-weight CogVideoX in diffusers layout, to try and test vidseg offline in seconds.

The folder loads through ``load_model(directory)`` (and ``CogVideoXPipeline.from_pretrained``) exactly like the
real checkpoints; its masks are meaningless. Geometry matches the shipped ``configs/tiny.yaml`` (copied in as
``vidseg.yaml``): 9 frames at 64 x 96 pixels -> latents 3 x 8 x 12 -> 3 x 4 x 6 = 72 video tokens, 16 text tokens.

The tokenizer is a T5 unigram tokenizer built from a fixed piece list (no download, no training): whole words for
the prompt vocabulary and common object names (every word of the VSPW class names), so different class names get
different first tokens, plus single characters so any other word still tokenises (such words share a first token
when they share a first letter).
"""

from __future__ import annotations

import logging
import shutil
from importlib import resources
from pathlib import Path

import torch

from vidseg.errors import OutputError
from vidseg.models.load import quiet_progress_bars

logger = logging.getLogger(__name__)

# Scheduler constructor arguments of the real checkpoints (scheduler/scheduler_config.json).
COGVIDEOX_2B_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "snr_shift_scale": 3.0,
}
COGVIDEOX_5B_SCHEDULER = {**COGVIDEOX_2B_SCHEDULER, "snr_shift_scale": 1.0}

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


def _tiny_tokenizer():
    """T5 unigram tokenizer: a whole word scores higher than spelling it out, so known words stay one piece."""
    from transformers import T5Tokenizer

    words = list(dict.fromkeys(_PROMPT_WORDS + _OBJECT_WORDS))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -5.0) for w in words]
    vocab += [("\u2581" + c, -9.0) for c in _CHARACTERS] + [(c, -10.0) for c in _CHARACTERS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def make_tiny_model(directory: str | Path, *, rope: bool = False, seed: int = 0) -> Path:
    """Write a random-weight CogVideoX pipeline (about 0.5 MB) to ``directory`` and return its path.

    Args:
        directory: folder to create (or overwrite); gets ``model_index.json``, ``transformer/``, ``vae/``,
            ``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``vidseg.yaml``.
        rope: a CogVideoX-5B-like variant: RoPE on video queries/keys, DPM scheduler (SNR shift 1), VAE scale 0.7.
            Default: 2B-like (3-D sin-cos positions, DDIM scheduler with SNR shift 3, VAE scale 1.15258426).
        seed: seed of the random weights.
    """
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    directory = Path(directory)
    tokenizer = _tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=max(len(tokenizer), 64), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu",
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        ))
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=16,
            text_embed_dim=32,  # = T5 d_model
            num_layers=2,
            # Latent size of a 9 x 64 x 96 clip: (9 - 1) / 4 + 1 = 3 frames of 8 x 12 (VAE / 8).
            sample_frames=9, sample_height=8, sample_width=12,
            patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
            use_rotary_positional_embeddings=rope,
        )
        vae = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
            temporal_compression_ratio=4,
            # VAE tiles are half the sample size: 48 x 40 px, whose strides under the default overlaps are whole
            # latent cells, so 64 x 96 frames take the tiled path like the real model at 480 x 720. (A 64 x 96
            # sample size would give 32 x 48 px tiles, which turn 64 px into 9 latent rows.)
            sample_height=96, sample_width=80,
            scaling_factor=0.7 if rope else 1.15258426,
        )
    scheduler = (CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER) if rope
                 else CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER))
    pipeline = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                 transformer=transformer, scheduler=scheduler)
    try:
        if directory.exists():
            shutil.rmtree(directory)
        with quiet_progress_bars():
            pipeline.save_pretrained(directory, safe_serialization=True)
        preset = resources.files("vidseg.configs") / "tiny.yaml"
        (directory / "vidseg.yaml").write_text(preset.read_text())
    except OSError as exc:
        raise OutputError(f"cannot write the tiny model to {directory}: {exc.strerror}; choose a writable folder") \
            from None
    logger.info("wrote a tiny random-weight CogVideoX (%s) to %s", "RoPE" if rope else "sin-cos", directory)
    return directory
