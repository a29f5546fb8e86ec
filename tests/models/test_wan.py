"""Wan2.1: the cross-attention read-out against a literal restatement of method.md §19.2, the processor leaving the
model's output unchanged, flow inversion, real clips end to end, and settings that fail before the model runs."""

from __future__ import annotations

import copy
import json
import math
import shutil
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import calinski_harabasz_score

from tests.conftest import run_cli
from vidseg.config import load_config, model_folder_config
from vidseg.errors import ConfigError
from vidseg.inversion import flow_grid, invert_flow, renoise_flow
from vidseg.models.base import TextEmbeddings
from vidseg.models.hub import load_model
from vidseg.models.wan import WanBackbone
from vidseg.models.wan.backbone import concept_positions, predict_flow
from vidseg.models.wan.capture import cross_attention_readout, prompt_length, read_cross_attention_maps
from vidseg.pipeline import VideoSegmenter


@pytest.fixture(scope="module")
def wan(tiny_wan_model_dir):
    return load_model(str(tiny_wan_model_dir))


@pytest.fixture(scope="module")
def wan_inputs(wan):
    torch.manual_seed(0)
    prompt = "A video of a person and a dog on the grass."
    classes = ["dog", "person", "grass"]
    text = wan.encode_text(prompt, classes)
    prompt_embeds, concepts = text.prompt_embeds, text.concepts
    latents = torch.randn(1, 4, 3, 8, 12)
    return prompt, classes, prompt_embeds, concepts, latents


def test_wan_is_recognised_and_text_has_512_slots(wan, wan_inputs):
    prompt, classes, prompt_embeds, concepts, _ = wan_inputs
    assert isinstance(wan, WanBackbone)
    assert prompt_embeds.shape == (1, 512, 32)
    length = prompt_length(prompt_embeds)
    assert length == len(wan.tokenizer(prompt).input_ids)  # real tokens, EOS included
    assert torch.all(prompt_embeds[0, length:] == 0) and torch.all(prompt_embeds[0, :length].abs().sum(-1) > 0)
    # Each class's row is its first token inside the prompt.
    tokens = wan.tokenizer.convert_ids_to_tokens(wan.tokenizer(prompt).input_ids)
    assert [tokens[i] for i in concepts.tolist()] == ["\u2581dog", "\u2581person", "\u2581grass"]


def test_concept_positions_first_subtoken_and_missing_names(wan):
    tokenizer = wan.tokenizer
    prompt = "A traffic light, a zqx and a dog."
    positions = concept_positions(tokenizer, prompt, ["Traffic_Light", "zqx", "dog"])  # names match any case
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(prompt).input_ids)
    assert tokens[positions[0]] == "\u2581traffic"
    assert tokens[positions[1]].startswith("\u2581")  # spelled in pieces: the first piece
    assert tokens[positions[2]] == "\u2581dog"
    with pytest.raises(ConfigError, match="'cat' is not in the prompt"):
        concept_positions(tokenizer, prompt, ["dog", "cat"])
    with pytest.raises(ConfigError):
        concept_positions(tokenizer, "A video of doghouses.", ["dog"])  # whole words only


def _literal_readout(transformer, latents, timestep, prompt_embeds, rows, layers, top_k):
    """method.md §19.2 written out per head and per text slot, all 512 slots, from the stock forward's attn2 inputs."""
    captured = {}
    hooks = [transformer.blocks[i].attn2.register_forward_pre_hook(
        lambda module, args, kwargs, i=i: captured.__setitem__(i, (args[0], args[1])), with_kwargs=True)
        for i in layers]
    try:
        with torch.no_grad():
            predict_flow(transformer, latents, timestep, prompt_embeds)
    finally:
        for hook in hooks:
            hook.remove()
    _, _, F, H, W = latents.shape
    h, w = H // 2, W // 2
    sel_layers, imap_layers, cross_layers = [], [], []
    for i in layers:
        attn = transformer.blocks[i].attn2
        x, text = captured[i]
        with torch.no_grad():
            q = attn.norm_q(attn.to_q(x))[0].double().unflatten(1, (attn.heads, -1)).transpose(0, 1)
            k = attn.norm_k(attn.to_k(text))[0].double().unflatten(1, (attn.heads, -1)).transpose(0, 1)
            v = attn.to_v(text)[0].double().unflatten(1, (attn.heads, -1)).transpose(0, 1)
        heads, _, d = q.shape
        per_head_g, per_head_ca, chi = [], [], []
        for head in range(heads):
            weights = torch.softmax(q[head] @ k[head].T / math.sqrt(d), dim=-1)  # [N, 512]
            o = weights @ v[head]  # [N, d]
            # §10: the official Wan baseline divides the logits by sqrt(d) twice.
            baseline = torch.softmax(q[head] @ k[head].T / math.sqrt(d) / math.sqrt(d), dim=-1)
            labels = np.repeat(np.arange(F), h * w)
            chi.append(calinski_harabasz_score(o.numpy(), labels))
            of = o.view(F, h * w, d)
            qf = q[head].view(F, h * w, d)
            g = torch.empty(k.shape[1], F, h * w, dtype=torch.float64)
            for slot in range(k.shape[1]):
                for f in range(F):
                    star = int(torch.argmax(qf[f] @ k[head, slot]))
                    g[slot, f] = of[f] @ of[f, star]
            z = (g - g.mean(0)) / (g.std(0, unbiased=True) + 1e-6)
            per_head_g.append(z)
            per_head_ca.append(baseline.T.reshape(-1, F, h * w))
        top = np.argsort(chi)[::-1][:top_k]
        sel_layers.append(torch.stack([per_head_g[j] for j in top]).mean(0))
        imap_layers.append(torch.stack(per_head_g).sum(0))
        cross_layers.append(torch.stack(per_head_ca).mean(0))
    out = {}
    for name, maps in (("imap", sel_layers), ("gramcol", imap_layers), ("cross_attention", cross_layers)):
        out[name] = torch.stack(maps).mean(0)[rows].view(len(rows), F, h, w).float()
    return out


@pytest.mark.parametrize("slots", ["compact", "full"])
def test_wan_maps_equal_the_literal_restatement(wan, wan_inputs, slots):
    # float64 throughout: the z-score divides by the spread over 512 mostly identical slots, which would amplify
    # float32 rounding of the attention outputs (both sides then agree to the last bit, not just to 1e-4).
    _, _, prompt_embeds, concepts, latents = wan_inputs
    transformer = copy.deepcopy(wan.transformer).double()
    prompt_embeds, latents = prompt_embeds.double(), latents.double()
    # The null concept is the first padding token.
    rows = concepts.tolist() + [prompt_length(prompt_embeds)]
    expected = _literal_readout(transformer, latents, 818.0, prompt_embeds, rows, [0, 1], top_k=1)
    got = read_cross_attention_maps(transformer, latents, 818.0, prompt_embeds, concepts, layers=[0, 1],
                                    top_k_heads=1, concept_slots=slots, with_null=True)
    assert set(got) == {"imap", "gramcol", "cross_attention"}
    for name in got:
        assert got[name].shape == (4, 3, 4, 6)
        torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=1e-4, msg=name)
        assert not torch.allclose(got[name][3], got[name][0], rtol=1e-2, atol=0), name


def test_wan_processor_leaves_the_output_bit_identical_and_is_restored(wan, wan_inputs):
    _, _, prompt_embeds, concepts, latents = wan_inputs
    transformer = wan.transformer
    before = dict(transformer.attn_processors)
    with torch.no_grad():
        stock = predict_flow(transformer, latents, 818.0, prompt_embeds)
    with cross_attention_readout(transformer, prompt_embeds, concepts, (3, 4, 6), layers=[0, 1], top_k_heads=1):
        with torch.no_grad():
            instrumented = predict_flow(transformer, latents, 818.0, prompt_embeds)
    assert torch.equal(stock, instrumented)
    assert all(transformer.attn_processors[k] is p for k, p in before.items())
    with pytest.raises(RuntimeError):
        with cross_attention_readout(transformer, prompt_embeds, concepts, (3, 4, 6), layers=[1], top_k_heads=1):
            raise RuntimeError("boom")
    assert all(transformer.attn_processors[k] is p for k, p in before.items())


def test_wan_video_latents_are_normalised(wan):
    pixels = torch.rand(9, 3, 64, 96) * 2 - 1
    latents = wan.encode_video(pixels)
    raw = wan.vae.encode(pixels.permute(1, 0, 2, 3)[None]).latent_dist.mode()
    mean = torch.tensor(wan.vae_config["latents_mean"]).view(1, -1, 1, 1, 1)
    std = torch.tensor(wan.vae_config["latents_std"]).view(1, -1, 1, 1, 1)
    assert latents.shape == (1, 4, 3, 8, 12)
    torch.testing.assert_close(latents, (raw - mean) / std)


def test_flow_inversion_and_renoise(wan, wan_inputs):
    _, _, prompt_embeds, _, latents = wan_inputs
    sigmas, timesteps = flow_grid(wan.scheduler, 50, 20)
    assert len(sigmas) == 51 and sigmas[-1] == 0 and abs(sigmas[20] - 0.8182) < 1e-3
    steps = []
    text = TextEmbeddings(prompt_embeds, torch.zeros(0))
    noisy, t = invert_flow(lambda z, t: wan.predict(z, t, text), wan.scheduler, latents, num_steps=50,
                           readout_index=20, on_step=lambda i, n: steps.append((i, n)))
    assert t == timesteps[20] and steps[-1] == (30, 30) and noisy.shape == latents.shape
    # Integrating back down the same grid with the same Euler rule comes close to the start.
    z = noisy
    for i in range(20, 50):
        v = predict_flow(wan.transformer, z, timesteps[i], prompt_embeds)
        z = z + (sigmas[i + 1] - sigmas[i]) * v
    assert (z - latents).norm() / latents.norm() < 0.2
    renoised, t2 = renoise_flow(wan.scheduler, latents, num_steps=50, readout_index=20, seed=42)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(renoised, (1 - sigmas[20]) * latents + sigmas[20] * noise)
    assert t2 == t


@pytest.mark.parametrize("codec,suffix", [("libx264", "mp4"), ("libvpx-vp9", "webm"), ("libsvtav1", "mp4")])
@pytest.mark.parametrize("inversion", ["ddim", "renoise"])
def test_tiny_wan_segments_real_clips_end_to_end(tiny_wan_model_dir, video_factory, tmp_path, codec, suffix,
                                                 inversion):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    video = video_factory(f"clip-{codec}.{suffix}", num_frames=14, height=72, width=128, fps=24, codec=codec)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "person", "dog", "--model", tiny_wan_model_dir, "--out", out,
                     "--inversion", inversion, "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    folder = out / video.stem
    masks = sorted((folder / "masks").glob("*.png"))
    assert len(masks) == 14
    from PIL import Image

    assert Image.open(masks[0]).size == (128, 72)
    doc = json.loads((folder / "labels.json").read_text())
    assert doc["prompt"] == "A video of a person and a dog." and doc["settings"]["inversion"]["method"] == inversion
    maps = np.load(folder / "saliency.npz")["saliency"]
    assert maps.shape[0] == 2 and maps.shape[2:] == (4, 6)


def test_wan_predicts_with_the_cross_attention_baseline(tiny_wan_model_dir, video_factory, tmp_path):
    video = video_factory("clip.mp4", num_frames=9, height=64, width=96)
    out = tmp_path / "out"
    result = run_cli("predict", video, "--classes", "person", "dog", "--model", tiny_wan_model_dir, "--out", out,
                     "--map", "cross_attention", "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "clip" / "labels.json").read_text())
    assert doc["settings"]["maps"]["kind"] == "cross_attention"
    maps = np.load(out / "clip" / "saliency.npz")["saliency"].astype(np.float32)
    # Attention weights: a share of each token's attention, between 0 and 1.
    assert maps.shape[0] == 2 and maps.min() >= 0 and 0 < maps.max() <= 1


@pytest.mark.parametrize("setting,expected", [
    ("maps.layers=[0,5]", "map layers \\[5\\] do not exist"),
    ("maps.top_k_heads=3", "top_k_heads is 3"),
    ("video.num_frames=11", "4k\\+1"),
    ("video.width=104", "multiples of 16"),
    ("inversion.prompt='A video of a cat.'", "'dog' is not in the prompt"),
    ("maps.kind=concept_attention", "Wan2.1 gives imap, gramcol, cross_attention$"),
])
def test_wan_settings_fail_before_the_model_runs(tiny_wan_model_dir, video_factory, tmp_path, setting, expected):
    video = video_factory("clip.mp4", num_frames=9)
    started = time.perf_counter()
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_wan_model_dir, "--out", tmp_path / "o",
                     "--set", setting, "-q")
    assert result.exit_code == 2
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1
    import re

    assert re.search(expected, result.output.strip()), result.output
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "o").exists()


def test_settings_are_checked_before_any_weights_load(tiny_wan_model_dir, tiny_model_dir):
    for folder, setting in ((tiny_wan_model_dir, "maps.layers=[7]"), (tiny_model_dir, "maps.top_k_heads=9")):
        config = load_config(model_dir_config=model_folder_config(folder), overrides=[setting])
        config.model.source = str(folder)
        config.validate()
        with pytest.raises(ConfigError):
            VideoSegmenter.from_pretrained(config=config)
    # The check itself reads config files only: the transformer is still unloaded afterwards.
    model = load_model(str(tiny_wan_model_dir))
    config = load_config(model_dir_config=model_folder_config(tiny_wan_model_dir))
    model.check_settings(config, ["dog"])
    assert model._transformer is None and model._text_encoder is None


def test_wan_preset_is_chosen_from_the_model(tiny_wan_model_dir, tmp_path):
    from vidseg.config import preset_for_model

    assert preset_for_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") == "wan2.1-1.3b"
    assert preset_for_model("Wan-AI/Wan2.1-T2V-14B-Diffusers") == "wan2.1-14b"
    bare = tmp_path / "wan"
    shutil.copytree(tiny_wan_model_dir, bare)
    (bare / "vidseg.yaml").unlink()
    assert preset_for_model(bare) == "wan2.1-1.3b"
    config = load_config("wan2.1-1.3b")
    assert config.maps.layers == list(range(5, 20)) and config.maps.top_k_heads == 3
    assert (config.video.height, config.video.width, config.video.num_frames) == (480, 832, 49)
    assert load_config("wan2.1-14b").maps.layers == list(range(5, 26))
