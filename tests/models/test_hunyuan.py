"""HunyuanVideo: the concept-stream read-out against a literal, per-head and per-token restatement of the official
one (docs/hunyuan.md), the processors leaving the model's output bit-identical, its text and latents, the
pipeline's flow grid, and real clips end to end."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import calinski_harabasz_score

from tests.conftest import run_cli
from vidseg.config import load_config, preset_for_model
from vidseg.inversion import flow_grid
from vidseg.models.hub import load_model
from vidseg.models.hunyuan import HunyuanBackbone
from vidseg.models.hunyuan.backbone import (
    GUIDANCE_SCALE, TEXT_SLOTS, llama_embeddings, predict_flow, prompt_template, template_crop,
)
from vidseg.models.hunyuan.capture import concept_stream_attention, read_concept_maps

TIMESTEP = 778.0


@pytest.fixture(scope="module")
def hunyuan(tiny_hunyuan_model_dir):
    return load_model(str(tiny_hunyuan_model_dir))


@pytest.fixture(scope="module")
def hunyuan_inputs(hunyuan):
    text = hunyuan.encode_text("A video of a person and a dog on the grass.", ["dog", "person", "grass"])
    latents = torch.randn(1, 4, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    return text, latents


def test_text_is_the_templated_caption_and_each_concept_alone(hunyuan, hunyuan_inputs):
    text, _ = hunyuan_inputs
    assert isinstance(hunyuan, HunyuanBackbone)
    assert text.prompt_embeds.shape == (1, TEXT_SLOTS, 32) and text.pooled.shape == (1, 32)
    (tokenizer, llama), _ = hunyuan._load_text_encoders()
    template = prompt_template()
    crop = template_crop(tokenizer, template)
    caption_ids = tokenizer(template.format("A video of a person and a dog on the grass.")).input_ids
    assert int(text.prompt_mask.sum()) == len(caption_ids) - crop  # the caption's tokens (and the closing ones)
    # The crop is where the caption starts: the first kept token is the caption's first.
    assert tokenizer.convert_ids_to_tokens(caption_ids[crop]) == "\u2581A"
    # A concept row is the class name's first token after the crop, encoded on its own (16 tokens).
    alone = llama_embeddings(tokenizer, llama, ["person"], template, crop, 16, hunyuan.device)[0][0, 0]
    torch.testing.assert_close(text.concepts[1], alone.to(text.concepts.dtype))
    assert not torch.allclose(text.concepts[0], text.concepts[1])


def test_a_caption_longer_than_the_slots_is_cut_with_a_warning(hunyuan, caplog):
    caption = "A video of " + " and ".join(["a dog", "a person"] * 100) + "."
    with caplog.at_level("WARNING"):
        text = hunyuan.encode_text(caption, ["dog"])
    assert "only the first 256 are used" in caplog.text
    assert int(text.prompt_mask.sum()) == TEXT_SLOTS


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[1, tokens, heads * d] -> [heads, tokens, d]."""
    return x[0].unflatten(-1, (heads, -1)).transpose(0, 1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention one head at a time; ``keep`` [keys] bool masks keys out."""
    out = []
    for h in range(q.shape[0]):
        logits = q[h] @ k[h].T / math.sqrt(q.shape[-1])
        if keep is not None:
            logits = logits.masked_fill(~keep, float("-inf"))
        out.append(torch.softmax(logits, dim=-1) @ v[h])
    return torch.stack(out)


def literal_maps(model, latents, timestep, text, layers, top_k):
    """The official HunyuanVideo read-out restated literally (docs/hunyuan.md): all 256 concept slots, per head, per
    slot and per frame, in the model's dtype; the video and caption streams advance through the stock blocks."""
    from diffusers.models.embeddings import apply_rotary_emb

    cfg = model.config
    heads, head_dim = cfg.num_attention_heads, cfg.attention_head_dim
    num_concepts = len(text.concepts)
    num_frames, grid_h, grid_w = latents.shape[2], latents.shape[3] // 2, latents.shape[4] // 2
    num_patches = grid_h * grid_w
    dtype = latents.dtype
    t = torch.tensor([timestep], dtype=torch.float32)  # the timestep stays float32, as in the pipeline
    temb, _ = model.time_text_embed(t, text.pooled, torch.tensor([GUIDANCE_SCALE * 1000], dtype=torch.float32))
    video = model.x_embedder(latents)
    caption = model.context_embedder(text.prompt_embeds, t, text.prompt_mask)
    slots = torch.zeros(1, TEXT_SLOTS, text.concepts.shape[1], dtype=dtype)
    slots[0, :num_concepts] = text.concepts
    slot_mask = torch.zeros(1, TEXT_SLOTS, dtype=torch.long)
    slot_mask[0, :num_concepts] = 1
    concepts = model.context_embedder(slots, t, slot_mask)
    rope = model.rope(latents)
    video_len = video.shape[1]
    keep = torch.cat([torch.ones(video_len, dtype=torch.bool), text.prompt_mask[0].bool()])
    mask = keep[None, None, None]  # the stock forward's [B, 1, 1, N] key mask
    labels = np.repeat(np.arange(num_frames), num_patches)
    names = ("imap", "gramcol", "cross_attention", "concept_attention")
    maps = {name: torch.zeros(num_concepts, num_frames, num_patches, dtype=torch.float64) for name in names}
    for i, block in enumerate(model.transformer_blocks[: max(layers) + 1]):
        attn = block.attn
        video_n = block.norm1(video, emb=temb)[0]
        caption_n = block.norm1_context(caption, emb=temb)[0]
        concepts_n, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(concepts, emb=temb)
        q = attn.norm_q(_heads(attn.to_q(video_n), heads))
        k = attn.norm_k(_heads(attn.to_k(video_n), heads))
        v = _heads(attn.to_v(video_n), heads)
        q = apply_rotary_emb(q.transpose(0, 1)[None], rope, sequence_dim=1)[0].transpose(0, 1)
        k = apply_rotary_emb(k.transpose(0, 1)[None], rope, sequence_dim=1)[0].transpose(0, 1)
        tq = attn.norm_added_q(_heads(attn.add_q_proj(caption_n), heads))
        tk = attn.norm_added_k(_heads(attn.add_k_proj(caption_n), heads))
        tv = _heads(attn.add_v_proj(caption_n), heads)
        cq = attn.norm_added_q(_heads(attn.add_q_proj(concepts_n), heads))
        ck = attn.norm_added_k(_heads(attn.add_k_proj(concepts_n), heads))
        cv = _heads(attn.add_v_proj(concepts_n), heads)
        out = _attend(torch.cat([q, tq], 1), torch.cat([k, tk], 1), torch.cat([v, tv], 1), keep)[:, :video_len]
        concept_out = _attend(cq, torch.cat([ck, k], 1), torch.cat([cv, v], 1))[:, :TEXT_SLOTS]
        if i in layers:
            o_video = out.reshape(heads, num_frames, num_patches, head_dim)
            q_video = q.reshape(heads, num_frames, num_patches, head_dim)
            chi = [calinski_harabasz_score(o_video[h].reshape(-1, head_dim).double().numpy(), labels)
                   for h in range(heads)]
            selected = list(np.argsort(chi)[::-1][:top_k])
            for h in range(heads):
                g = torch.zeros(TEXT_SLOTS, num_frames, num_patches, dtype=torch.float64)
                for c in range(TEXT_SLOTS):
                    for f in range(num_frames):
                        p_star = int(torch.argmax(q_video[h, f] @ ck[h, c]))
                        g[c, f] = o_video[h, f].double() @ o_video[h, f, p_star].double()
                z = (g - g.mean(0)) / (g.std(0) + 1e-6)  # over all 256 slots, padding included
                maps["gramcol"] += z[:num_concepts]
                if h in selected:
                    maps["imap"] += z[:num_concepts] / top_k
                for c in range(num_concepts):
                    maps["cross_attention"][c] += (q_video[h] @ ck[h, c]).double().view(num_frames, -1) / heads
                    maps["concept_attention"][c] += (o_video[h] @ concept_out[h, c]).double()
        # The official concept residual adds the normalised input (the processor returns it), then the FF branch.
        concepts = concepts + concepts_n * c_gate_msa.unsqueeze(1)
        normed = block.norm2_context(concepts) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        concepts = concepts + c_gate_mlp.unsqueeze(1) * block.ff_context(normed)
        video, caption = block(video, caption, temb, mask, rope)
    shape = (num_concepts, num_frames, grid_h, grid_w)
    return {name: (m / len(layers)).view(shape) for name, m in maps.items()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("slots", ["compact", "full"])
def test_maps_equal_the_literal_restatement(hunyuan, hunyuan_inputs, dtype, slots):
    text, latents = hunyuan_inputs
    transformer = hunyuan.transformer.to(dtype)
    try:
        text = hunyuan._transformer_text(text)
        text = type(text)(*(x.to(dtype) if x.is_floating_point() else x for x in
                            (text.prompt_embeds, text.concepts, text.prompt_mask, text.pooled)))
        with torch.no_grad():
            expected = literal_maps(transformer, latents.to(dtype), TIMESTEP, text, [0, 1], 1)
            got = read_concept_maps(transformer, latents.to(dtype), TIMESTEP, text.prompt_embeds, text.concepts,
                                    prompt_attention_mask=text.prompt_mask, pooled_prompt_embeds=text.pooled,
                                    layers=[0, 1], top_k_heads=1, concept_slots=slots)
    finally:
        transformer.to(torch.float32)
    rtol = 1e-6 if dtype == torch.float64 else 1e-4  # the maps come back in float32 whatever the model's dtype
    assert set(got) == set(expected)
    for name in expected:
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(got[name].double(), expected[name], rtol=0, atol=rtol * scale, msg=name)


def test_the_processors_leave_the_output_bit_identical_and_are_restored(hunyuan, hunyuan_inputs):
    text, latents = hunyuan_inputs
    transformer = hunyuan.transformer
    before = dict(transformer.attn_processors)
    with torch.no_grad():
        stock = predict_flow(transformer, latents, TIMESTEP, text)
        with concept_stream_attention(transformer, text.concepts, (3, 4, 6), layers=[0, 1], top_k_heads=1):
            instrumented = predict_flow(transformer, latents, TIMESTEP, text)
    assert torch.equal(stock, instrumented)
    assert all(transformer.attn_processors[k] is p for k, p in before.items())
    assert not transformer._forward_pre_hooks and not transformer.transformer_blocks[0]._forward_pre_hooks
    with pytest.raises(RuntimeError):
        with concept_stream_attention(transformer, text.concepts, (3, 4, 6), layers=[1], top_k_heads=1):
            raise RuntimeError("boom")
    assert all(transformer.attn_processors[k] is p for k, p in before.items())


def test_latents_are_scaled_and_the_grid_is_the_pipelines(hunyuan):
    pixels = torch.rand(9, 3, 64, 96) * 2 - 1
    latents = hunyuan.encode_video(pixels)
    raw = hunyuan.vae.encode(pixels.permute(1, 0, 2, 3)[None]).latent_dist.mode()
    assert latents.shape == (1, 4, 3, 8, 12)
    torch.testing.assert_close(latents, raw * hunyuan.vae.config.scaling_factor)
    # HunyuanVideoPipeline's grid: sigmas linspace(1, 0, 31)[:-1], shifted by 7; index 20 of 30 is 7/9.
    sigmas, timesteps = flow_grid(hunyuan.scheduler, 30, 20)
    assert len(sigmas) == 31 and sigmas[-1] == 0 and sigmas[0] == pytest.approx(1.0)
    assert sigmas[20] == pytest.approx(7 / 9, abs=1e-6) and timesteps[20] == pytest.approx(7000 / 9, abs=1e-3)


@pytest.mark.parametrize("inversion", ["ddim", "renoise"])
def test_tiny_hunyuan_predicts_and_localizes_real_clips(tiny_hunyuan_model_dir, video_factory, tmp_path, inversion):
    video = video_factory("clip.mp4", num_frames=14, height=72, width=128, fps=24)
    result = run_cli("predict", video, "--classes", "person", "dog", "--model", tiny_hunyuan_model_dir, "--out",
                     tmp_path / "out", "--inversion", inversion, "--no-crf", "--no-overlay", "-q")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / video.stem
    assert len(list((folder / "masks").glob("*.png"))) == 14
    doc = json.loads((folder / "labels.json").read_text())
    assert doc["settings"]["inversion"]["method"] == inversion
    maps = np.load(folder / "saliency.npz")["saliency"]
    assert maps.shape[0] == 2 and maps.shape[2:] == (4, 6)
    result = run_cli("localize", video, "--concepts", "walking", "--model", tiny_hunyuan_model_dir, "--out",
                     tmp_path / "loc", "--inversion", inversion, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "loc" / video.stem / "localize.json").read_text())["concepts"][0]["concept"] == \
        "walking"


def test_tiny_hunyuan_labels_a_dataset(tiny_hunyuan_model_dir, tmp_path):
    from tests.cli.test_label_cli import make_vspw_tree

    root, pred = tmp_path / "vspw", tmp_path / "pred"
    make_vspw_tree(root, {"1_aaa": 10})
    result = run_cli("label", root, "--out", pred, "--split", "val.txt", "--classes-from-gt", "--model",
                     tiny_hunyuan_model_dir, "--no-crf", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((pred / "1_aaa").glob("*.png"))) == 5


@pytest.mark.parametrize("setting,expected", [
    ("maps.layers=[0,5]", "map layers \\[5\\] do not exist"),
    ("maps.top_k_heads=3", "top_k_heads is 3"),
    ("video.num_frames=11", "4k\\+1"),
])
def test_settings_fail_before_the_model_runs(tiny_hunyuan_model_dir, video_factory, tmp_path, setting, expected):
    import re

    video = video_factory("clip.mp4", num_frames=9)
    result = run_cli("predict", video, "--classes", "dog", "--model", tiny_hunyuan_model_dir, "--out",
                     tmp_path / "o", "--set", setting, "-q")
    assert result.exit_code == 2 and re.search(expected, result.output.strip()), result.output
    assert not (tmp_path / "o").exists()


def test_the_preset_is_chosen_from_the_model(tiny_hunyuan_model_dir, tmp_path):
    assert preset_for_model("hunyuanvideo-community/HunyuanVideo") == "hunyuanvideo"
    bare = tmp_path / "hunyuan"
    shutil.copytree(tiny_hunyuan_model_dir, bare)
    (bare / "vidseg.yaml").unlink()
    assert preset_for_model(bare) == "hunyuanvideo"
    config = load_config("hunyuanvideo")
    assert config.maps.layers == [1, 2, 4, 5, 6, 9, 10, 13, 15, 16, 17, 18, 19] and config.maps.top_k_heads == 5
    assert (config.inversion.num_steps, config.inversion.readout_index) == (30, 20)


def test_timestep_and_guidance_stay_exact_in_a_bfloat16_run(hunyuan, hunyuan_inputs):
    """Their embeddings are sinusoids computed from the values: in bfloat16, 194.4 would be 194 and 6000 6016."""
    text, latents = hunyuan_inputs
    transformer = hunyuan.transformer
    seen = {}

    def keep(module, args, kwargs):
        seen.update(timestep=kwargs["timestep"], guidance=kwargs["guidance"])

    hook = transformer.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        transformer.to(torch.bfloat16)
        bf16 = type(text)(*(x.to(torch.bfloat16) if x.is_floating_point() else x for x in
                            (text.prompt_embeds, text.concepts, text.prompt_mask, text.pooled)))
        with torch.no_grad():
            predict_flow(transformer, latents.to(torch.bfloat16), 194.4, bf16)
    finally:
        hook.remove()
        transformer.to(torch.float32)
    assert seen["timestep"].dtype == seen["guidance"].dtype == torch.float32
    assert float(seen["timestep"][0]) == pytest.approx(194.4) and float(seen["guidance"][0]) == 6000.0
