"""CogVideoX's random-weight builders: the tiny and toy pipelines (``vidseg.models.tiny``) and the real checkpoints'
geometries (``vidseg.models.geometry``), with their schedulers.

Geometries: the configurations of diffusers' ``scripts/convert_cogvideox_to_diffusers.py`` (diffusers' default
``CogVideoXTransformer3DModel()`` and ``AutoencoderKLCogVideoX()`` are CogVideoX-2B; 5B has 48 heads, 42 blocks and
RoPE, and a VAE scaling factor of 0.7); text encoder T5-v1.1-XXL. 13 x 30 x 45 video tokens + 226 text tokens at
49 x 480 x 720.
"""

from __future__ import annotations

from typing import Any

import torch

from vidseg.models.tiny import SmallModelSpec, text_encoder_config, tiny_tokenizer

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

GEOMETRIES = ("cogvideox-2b", "cogvideox-5b")
# Constructor arguments that differ from diffusers' defaults (which are CogVideoX-2B's).
_TRANSFORMER_ARGS: dict[str, dict[str, Any]] = {
    "cogvideox-2b": {"num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
    "cogvideox-5b": {"num_attention_heads": 48, "num_layers": 42, "use_rotary_positional_embeddings": True},
}
_VAE_SCALING = {"cogvideox-2b": 1.15258426, "cogvideox-5b": 0.7}
TINY_PRESET = "tiny"  # configs/<preset>.yaml of the tiny model


def transformer_config(geometry: str) -> dict[str, Any]:
    return dict(_TRANSFORMER_ARGS[geometry])


def build_vae(geometry: str) -> Any:
    """``AutoencoderKLCogVideoX`` (215.6 M parameters) with ``geometry``'s scaling factor."""
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(scaling_factor=_VAE_SCALING[geometry])


def build_text_encoder(config: dict[str, Any]) -> Any:
    """A ``T5EncoderModel`` of ``config`` (T5-v1.1-XXL's keys)."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**config))


def scheduler(geometry: str) -> Any:
    """The checkpoint's scheduler: ``CogVideoXDDIMScheduler`` (2B, SNR shift 3) or ``CogVideoXDPMScheduler``
    (5B, SNR shift 1)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    if geometry == "cogvideox-5b":
        return CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER)
    return CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER)


def random_text(transformer_config: dict[str, Any], num_concepts: int, generator: torch.Generator) -> Any:
    """Random caption and concept embeddings of the transformer's text shape (benchmarks: cost does not depend on
    the values)."""
    from vidseg.models.base import TextEmbeddings

    t = transformer_config
    prompt = torch.randn(1, t["max_text_seq_length"], t["text_embed_dim"], generator=generator)
    return TextEmbeddings(prompt, torch.randn(num_concepts, t["text_embed_dim"], generator=generator))


def build_tiny_pipeline(spec: SmallModelSpec, *, rope: bool = False, seed: int = 0) -> Any:
    """A random-weight ``CogVideoXPipeline`` of ``spec``'s shape (the real diffusers / transformers classes).

    ``rope``: a CogVideoX-5B-like variant (RoPE on video queries/keys, DPM scheduler with SNR shift 1, VAE scale
    0.7); default 2B-like (3-D sin-cos positions, DDIM scheduler with SNR shift 3, VAE scale 1.15258426).
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_tokenizer(spec.extra_words)  # without spec.appended_words: they come last (below)
    scale = spec.spatial_compression
    latent_h, latent_w = spec.height // scale, spec.width // scale
    vae_h, vae_w = spec.vae_sample or (2 * spec.height, 2 * spec.width)
    blocks = len(spec.vae_widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(T5Config(**text_encoder_config(spec, tokenizer)))
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
        if spec.appended_words:
            tokenizer = tiny_tokenizer(spec.extra_words, spec.appended_words)
            text_encoder.resize_token_embeddings(max(len(tokenizer), 64), mean_resizing=False)
    if spec.vae_encoder in ("colour", "colour-motion"):
        colour_keeping_encoder(vae, motion=spec.vae_encoder == "colour-motion")
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler("cogvideox-5b" if rope else "cogvideox-2b"))


# Latent channels of colour_keeping_encoder: 0-11 the mean R, G, B of each 2 x 2-pixel quadrant of the cell
# (quadrant q = 2 * row + column holds channels 3q .. 3q + 2), 12-13 the cell's mean horizontal and vertical luminance
# gradient (where an edge runs through it, and which way); the other latent channels are 0.
_QUADRANT_CHANNELS = 12
_COLOUR_CHANNELS = _QUADRANT_CHANNELS + 2
# With motion=True, channel _COLOUR_CHANNELS: the cell's mean luminance change from one frame to the next.
_SILU_OFFSET = 3.0  # norm_out's bias: SiLU is nearly linear (slope 0.93-1.05) around it


@torch.no_grad()
def colour_keeping_encoder(vae: Any, *, motion: bool = False) -> Any:
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

    ``motion``: one more latent channel holds each cell's luminance change from the previous frame, averaged over the
    latent frame's frames (``conv_in``'s previous-frame tap). Averaging four frames into one latent frame leaves a
    moving shape only a slight smear; a real video VAE keeps what happens between its four frames (its decoder
    rebuilds them), and this channel keeps the part of it that says where something moved.
    """
    encoder = vae.encoder
    width = encoder.conv_in.conv.out_channels
    samplers = [s for block in encoder.down_blocks for s in block.downsamplers or []]
    kept = _COLOUR_CHANNELS + int(motion)
    if len(samplers) != 2 or width < kept or vae.config.latent_channels < kept:
        raise ValueError(f"a colour-keeping encoder needs 2 downsamplers and {kept} channels, the VAE "
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
    if motion:  # channel 5: luminance now minus luminance one frame earlier (the causal conv's middle tap)
        for c in range(3):
            conv_in[5, c, -1, 1, 1] = 1.0 / 3
            conv_in[5, c, -2, 1, 1] = -1.0 / 3
    for c in range(6 if motion else 5):
        samplers[0].conv.weight[c, c, :2, :2] = 0.25
    for row in range(2):
        for col in range(2):
            for c in range(3):
                samplers[1].conv.weight[3 * (2 * row + col) + c, c, row, col] = 1.0
    for g in range(3 if motion else 2):  # the gradients (and the luminance change) averaged over 2 x 2 inputs
        samplers[1].conv.weight[_QUADRANT_CHANNELS + g, 3 + g, :2, :2] = 0.25
    # Residual branches: conv2 is zero, so each block returns its input.
    encoder.norm_out.weight.fill_(1.0)
    encoder.norm_out.bias.fill_(_SILU_OFFSET)
    conv_out = encoder.conv_out.conv
    for c in range(kept):
        conv_out.weight[c, c, -1, 1, 1] = 1.0
        conv_out.bias[c] = -torch.nn.functional.silu(torch.tensor(_SILU_OFFSET))
    conv_out.bias[vae.config.latent_channels:] = -20.0  # log-variance: the posterior is its mean
    return vae
