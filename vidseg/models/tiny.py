"""A tiny random-weight CogVideoX in diffusers layout, to try and test vidseg offline in seconds.

The folder loads through ``load_model(directory)`` (and ``CogVideoXPipeline.from_pretrained``) exactly like the
real checkpoints; its masks are meaningless. Geometry matches the shipped ``configs/tiny.yaml`` (copied in as
``vidseg.yaml``). The same builder, at ``TOY_SPEC``'s shape, is the starting point of the trained toy model
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


_TOY_WORDS = "circle square triangle star red green blue yellow purple orange white black pink cyan".split()


def _tiny_tokenizer(extra_words: Sequence[str] = ()):
    """T5 unigram tokenizer: a whole word scores higher than spelling it out, so known words stay one piece."""
    from transformers import T5Tokenizer

    words = list(dict.fromkeys(_PROMPT_WORDS + _OBJECT_WORDS + list(extra_words)))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -5.0) for w in words]
    vocab += [("\u2581" + c, -9.0) for c in _CHARACTERS] + [(c, -10.0) for c in _CHARACTERS]
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
    # The VAE's tile size; tiles are half of it. None: twice the clip, so the clip is encoded in one piece.
    vae_sample: tuple[int, int] | None = None
    # "random": the VAE's random initialisation; "colour": an encoder set to keep colour locally
    # (colour_keeping_encoder), whose decoder stays random.
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
                          extra_words=tuple(_TOY_WORDS), vae_encoder="colour")


def _text_encoder_config(spec: SmallModelSpec, tokenizer: Any) -> dict[str, Any]:
    """A 2-layer T5-style encoder of ``spec.text_dim`` width (T5 for CogVideoX, umT5 for Wan take the same keys)."""
    return dict(vocab_size=max(len(tokenizer), 64), d_model=spec.text_dim, d_kv=8, d_ff=2 * spec.text_dim,
                num_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def build_small_pipeline(spec: SmallModelSpec, *, rope: bool = False, seed: int = 0) -> Any:
    """A random-weight ``CogVideoXPipeline`` of ``spec``'s shape (the real diffusers / transformers classes).

    ``rope``: a CogVideoX-5B-like variant (RoPE on video queries/keys, DPM scheduler with SNR shift 1, VAE scale
    0.7); default 2B-like (3-D sin-cos positions, DDIM scheduler with SNR shift 3, VAE scale 1.15258426).
    """
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = _tiny_tokenizer(spec.extra_words)
    scale = spec.spatial_compression
    latent_h, latent_w = spec.height // scale, spec.width // scale
    vae_h, vae_w = spec.vae_sample or (2 * spec.height, 2 * spec.width)
    blocks = len(spec.vae_widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(**_text_encoder_config(spec, tokenizer)))
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=spec.heads, attention_head_dim=spec.head_dim, in_channels=spec.latent_channels,
            out_channels=spec.latent_channels, time_embed_dim=spec.time_embed_dim, text_embed_dim=spec.text_dim,
            num_layers=spec.layers, sample_frames=spec.num_frames, sample_height=latent_h, sample_width=latent_w,
            patch_size=2, temporal_compression_ratio=4, max_text_seq_length=spec.text_len,
            use_rotary_positional_embeddings=rope,
        )
        vae = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * blocks, up_block_types=("CogVideoXUpBlock3D",) * blocks,
            block_out_channels=spec.vae_widths, latent_channels=spec.latent_channels, layers_per_block=1,
            norm_num_groups=spec.vae_groups, temporal_compression_ratio=4,
            sample_height=vae_h, sample_width=vae_w, scaling_factor=0.7 if rope else 1.15258426,
        )
    if spec.vae_encoder == "colour":
        colour_keeping_encoder(vae)
    scheduler = (CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER) if rope
                 else CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER))
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)


# Latent channels of colour_keeping_encoder: 0-11 the mean R, G, B of each 2 x 2-pixel quadrant of the cell
# (quadrant q = 2 * row + column holds channels 3q .. 3q + 2), 12-13 the cell's mean horizontal and vertical luminance
# gradient (where an edge runs through it, and which way); the other latent channels are 0.
_QUADRANT_CHANNELS = 12
_COLOUR_CHANNELS = _QUADRANT_CHANNELS + 2
_SILU_OFFSET = 3.0  # norm_out's bias: SiLU is nearly linear (slope 0.93-1.05) around it


@torch.no_grad()
def colour_keeping_encoder(vae: Any) -> Any:
    """Set an ``AutoencoderKLCogVideoX``'s encoder (two stride-2 stages, 16 channels wide) so each latent cell holds
    the mean colour of its four 2 x 2-pixel quadrants and its mean luminance gradient (averaged over the frames the
    causal VAE groups), then return ``vae``.

    A random encoder scrambles colour: a linear read of its latents explained about 10 % of the variance of the
    4 x 4-pixel mean colour on toy frames, and the toy model had to learn to unscramble it before it could see a
    shape. Keeping only each cell's mean colour then left a toy shape 6-12 cells across, too coarse to tell a star's
    points from a circle's rim; the quadrants double that resolution at the cost of latent channels (16, as
    CogVideoX's own VAE has). Set this way: ``conv_in`` copies RGB and takes the luminance gradient of the current
    frame, every residual branch is zeroed (blocks pass their input on), the first stride-2 downsampler takes 2 x 2
    means, the second moves each of its 2 x 2 inputs' colour into channels of their own (space to depth) and
    averages the gradient (their time pooling is the VAE's own), the group norm and SiLU before ``conv_out`` act as
    one global affine map (channels are standardised over the clip), and ``conv_out`` keeps ``_COLOUR_CHANNELS`` as
    the posterior mean with a tiny variance. Only the encoder is set: the decoder stays random, so decoded frames
    mean nothing (vidseg never decodes).
    """
    encoder = vae.encoder
    width = encoder.conv_in.conv.out_channels
    samplers = [s for block in encoder.down_blocks for s in block.downsamplers or []]
    if len(samplers) != 2 or width < _COLOUR_CHANNELS or vae.config.latent_channels < _COLOUR_CHANNELS:
        raise ValueError(f"a colour-keeping encoder needs 2 downsamplers and {_COLOUR_CHANNELS} channels, the VAE "
                         f"has {len(samplers)} and {width} / {vae.config.latent_channels}")
    for module in encoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            module.weight.zero_()
            if module.bias is not None:
                module.bias.zero_()
    conv_in = encoder.conv_in.conv.weight  # [out, 3, time, 3, 3]; the last time tap is the current frame
    for c in range(3):
        conv_in[c, c, -1, 1, 1] = 1.0
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    for c in range(3):  # luminance = mean of R, G, B
        conv_in[3, c, -1] = sobel / 3
        conv_in[4, c, -1] = sobel.T / 3
    # The downsamplers pad right / bottom, so taps 0-1 are the output cell's own 2 x 2 inputs.
    for c in range(5):
        samplers[0].conv.weight[c, c, :2, :2] = 0.25
    for row in range(2):
        for col in range(2):
            for c in range(3):
                samplers[1].conv.weight[3 * (2 * row + col) + c, c, row, col] = 1.0
    for g in range(2):
        samplers[1].conv.weight[_QUADRANT_CHANNELS + g, 3 + g, :2, :2] = 0.25
    # Residual branches: conv2 is zero, so each block returns its input.
    encoder.norm_out.weight.fill_(1.0)
    encoder.norm_out.bias.fill_(_SILU_OFFSET)
    conv_out = encoder.conv_out.conv
    for c in range(_COLOUR_CHANNELS):
        conv_out.weight[c, c, -1, 1, 1] = 1.0
        conv_out.bias[c] = -torch.nn.functional.silu(torch.tensor(_SILU_OFFSET))
    conv_out.bias[vae.config.latent_channels:] = -20.0  # log-variance: the posterior is its mean
    return vae


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


def build_tiny_wan_pipeline(spec: SmallModelSpec, *, seed: int = 0) -> Any:
    """A random-weight ``WanPipeline`` of ``spec``'s shape: ``WanTransformer3DModel`` (cross-attention to 512
    umT5 slots), ``AutoencoderKLWan`` (x4 time, x8 space, normalised latents), a umT5-style encoder with the tiny
    tokenizer, and Wan's flow-matching UniPC scheduler (shift 3)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _tiny_tokenizer(spec.extra_words)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = UMT5EncoderModel(UMT5Config(**_text_encoder_config(spec, tokenizer)))
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=spec.heads, attention_head_dim=spec.head_dim,
            in_channels=spec.latent_channels, out_channels=spec.latent_channels, text_dim=spec.text_dim,
            freq_dim=spec.time_embed_dim, ffn_dim=2 * spec.heads * spec.head_dim, num_layers=spec.layers,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
        )
        channels = spec.latent_channels
        vae = AutoencoderKLWan(
            base_dim=spec.vae_widths[0], z_dim=channels, dim_mult=[1] * len(spec.vae_widths), num_res_blocks=1,
            attn_scales=[], temperal_downsample=[False, True, True],
            # Per-channel statistics like the real VAE's lists, so the normalisation is exercised.
            latents_mean=[round(0.1 * (i - channels / 2), 3) for i in range(channels)],
            latents_std=[round(0.8 + 0.2 * i, 3) for i in range(channels)],
        )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler)


def make_tiny_model(directory: str | Path, *, family: str = "cogvideox", rope: bool = False, seed: int = 0) -> Path:
    """Write a random-weight CogVideoX pipeline (about 0.5 MB) to ``directory`` and return its path.

    Args:
        directory: folder to create (or overwrite); gets ``model_index.json``, ``transformer/``, ``vae/``,
            ``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``vidseg.yaml``.
        family: ``cogvideox`` or ``wan`` (``build_tiny_wan_pipeline``; 9 frames at 64 x 96 as well).
        rope: a CogVideoX-5B-like variant (see ``build_small_pipeline``).
        seed: seed of the random weights.
    """
    if family == "wan":
        path = save_small_pipeline(build_tiny_wan_pipeline(TINY_SPEC, seed=seed), directory, "tiny-wan")
        logger.info("wrote a tiny random-weight Wan2.1 to %s", path)
        return path
    if family != "cogvideox":
        raise ValueError(f"family must be cogvideox or wan, not {family!r}")
    path = save_small_pipeline(build_small_pipeline(TINY_SPEC, rope=rope, seed=seed), directory, TINY_SPEC.preset)
    logger.info("wrote a tiny random-weight CogVideoX (%s) to %s", "RoPE" if rope else "sin-cos", path)
    return path
