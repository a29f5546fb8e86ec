"""HunyuanVideo's random-weight builders: the tiny pipeline (``vidseg.models.tiny``) and the real checkpoint's
geometry (``vidseg.models.geometry``): diffusers' default ``HunyuanVideoTransformer3DModel()`` (20 dual-stream and
40 single-stream blocks, 24 heads x 128, guidance-distilled), ``AutoencoderKLHunyuanVideo()`` (x8 space, x4 time,
16 channels, scaling factor 0.476986), the LLaVA-LLaMA-3-8B text encoder's shape and CLIP ViT-L/14's text tower.
13 x 30 x 45 video tokens and up to 256 text tokens at 49 x 480 x 720.
"""

from __future__ import annotations

from typing import Any

import torch

from vidseg.errors import ConfigError
from vidseg.models.tiny import SmallModelSpec, tiny_tokenizer

GEOMETRIES = ("hunyuanvideo",)
TINY_PRESET = "tiny-hunyuan"  # configs/<preset>.yaml of the tiny model
FLOW_SHIFT = 7.0  # the checkpoint's FlowMatchEulerDiscreteScheduler shift
# xtuner/llava-llama-3-8b-v1_1 (text_encoder/config.json of hunyuanvideo-community/HunyuanVideo): LLaMA-3-8B.
LLAVA_LLAMA_3_8B: dict[str, Any] = {
    "vocab_size": 128320, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "bos_token_id": 128000, "eos_token_id": 128001,
}
# openai/clip-vit-large-patch14, the text tower (text_encoder_2): 12 layers, 768 wide, 77 positions.
CLIP_L_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "projection_dim": 768, "hidden_act": "quick_gelu",
}


def transformer_config(geometry: str) -> dict[str, Any]:
    """diffusers' defaults are HunyuanVideo's; ``num_layers`` (the dual-stream blocks, where the maps are read) is
    stated so a benchmark can truncate the depth."""
    return {"num_layers": 20, "num_single_layers": 40}


def build_vae(geometry: str) -> Any:
    """diffusers' default ``AutoencoderKLHunyuanVideo()``: the HunyuanVideo VAE."""
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo()


def build_text_encoder(config: dict[str, Any]) -> Any:
    """The two encoders ``HunyuanBackbone`` runs, as one module list: a LLaMA-3-8B-shaped ``LlamaModel`` (with
    ``config``'s layer count, as the benchmarks truncate T5's) and CLIP-L's text tower."""
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    llama = LlamaModel(LlamaConfig(**{**LLAVA_LLAMA_3_8B, "num_hidden_layers": config["num_layers"]}))
    return torch.nn.ModuleList([llama, CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT))])  # moved and cast as one


def scheduler(geometry: str) -> Any:
    """HunyuanVideo's ``FlowMatchEulerDiscreteScheduler`` (shift 7)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT)


def random_text(transformer_config: dict[str, Any], num_concepts: int, generator: torch.Generator) -> Any:
    """A random 24-token caption in the 256 slots (the rest masked), its pooled CLIP embedding and random concept
    rows (benchmarks: cost does not depend on the values)."""
    from vidseg.models.hunyuan.backbone import TEXT_SLOTS, HunyuanTextEmbeddings

    dim = transformer_config.get("text_embed_dim", 4096)
    pooled = transformer_config.get("pooled_projection_dim", 768)
    mask = torch.zeros(1, TEXT_SLOTS, dtype=torch.long)
    mask[:, :24] = 1
    return HunyuanTextEmbeddings(torch.randn(1, TEXT_SLOTS, dim, generator=generator),
                                 torch.randn(num_concepts, dim, generator=generator), mask,
                                 torch.randn(1, pooled, generator=generator))


def build_tiny_pipeline(spec: SmallModelSpec, *, seed: int = 0, rope: bool = False) -> Any:
    """A random-weight ``HunyuanVideoPipeline`` of ``spec``'s shape: ``HunyuanVideoTransformer3DModel`` (2
    dual-stream and 1 single-stream block, guidance embedding), ``AutoencoderKLHunyuanVideo`` (x4 time, x8 space),
    a 2-layer ``LlamaModel`` and a 2-layer ``CLIPTextModel`` sharing the tiny tokenizer, and the shift-7 flow
    scheduler."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    if rope:
        raise ConfigError("--rope makes a CogVideoX-5B-like model; HunyuanVideo always uses RoPE, leave --rope out")
    tokenizer = tiny_tokenizer(spec.extra_words)
    vocab = max(len(tokenizer), 64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # The prompt template tokenises to a few hundred pieces with the tiny tokenizer: positions to spare.
        llama = LlamaModel(LlamaConfig(vocab_size=vocab, hidden_size=spec.text_dim, intermediate_size=2 * spec.text_dim,
                                       num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=2048, pad_token_id=0, bos_token_id=0, eos_token_id=1))
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=spec.text_dim,
                                            intermediate_size=2 * spec.text_dim, num_hidden_layers=2,
                                            num_attention_heads=4, max_position_embeddings=77,
                                            projection_dim=spec.text_dim, pad_token_id=0, bos_token_id=0,
                                            eos_token_id=1))
        head_dim = spec.head_dim
        transformer = HunyuanVideoTransformer3DModel(
            in_channels=spec.latent_channels, out_channels=spec.latent_channels, num_attention_heads=spec.heads,
            attention_head_dim=head_dim, num_layers=spec.layers, num_single_layers=1, num_refiner_layers=1,
            mlp_ratio=2.0, patch_size=2, patch_size_t=1, guidance_embeds=True, text_embed_dim=spec.text_dim,
            pooled_projection_dim=spec.text_dim, rope_axes_dim=(head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8),
        )
        widths = spec.vae_widths
        vae = AutoencoderKLHunyuanVideo(
            latent_channels=spec.latent_channels, block_out_channels=widths,
            down_block_types=("HunyuanVideoDownBlock3D",) * len(widths),
            up_block_types=("HunyuanVideoUpBlock3D",) * len(widths), layers_per_block=1,
            norm_num_groups=spec.vae_groups, spatial_compression_ratio=spec.spatial_compression,
            temporal_compression_ratio=4, mid_block_add_attention=False,
        )
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=tokenizer, transformer=transformer, vae=vae,
                                scheduler=scheduler("hunyuanvideo"), text_encoder_2=clip, tokenizer_2=tokenizer)
