"""IMAP / GramCol read-out and the two baselines: the three statistics, the instrumented processor and
read_concept_maps against a naive re-implementation of method.md §5-§10 written here with explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import apply_rotary_emb
from sklearn.metrics import calinski_harabasz_score

from vidseg.errors import ConfigError
from vidseg.maps import frame_separation, gramcol, surrogate_tokens, zscore_over_slots
from vidseg.models.cogvideox.backbone import predict_velocity, rotary_embedding, token_grid
from vidseg.models.cogvideox.capture import concept_stream_attention, read_concept_maps

TEXT_LEN = 16  # max_text_seq_length of the tiny models = number of concept slots
TEXT_DIM = 32


def make_transformer(rope: bool, num_layers: int = 3) -> CogVideoXTransformer3DModel:
    """Tiny random CogVideoX (reference.md §6.5): 2 heads x 16 (RoPE splits 16 into 4/6/6), 8 x 12 latents."""
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=16,
        text_embed_dim=TEXT_DIM,
        num_layers=num_layers,
        sample_width=12,
        sample_height=8,
        sample_frames=9,  # 3 latent frames
        max_text_seq_length=TEXT_LEN,
        use_rotary_positional_embeddings=rope,
    )
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["sincos", "rope"])
def transformer(request: pytest.FixtureRequest) -> CogVideoXTransformer3DModel:
    return make_transformer(rope=request.param)


def make_inputs(num_concepts: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents [1, 3, 4, 8, 12] (3 x 4 x 6 tokens), prompt embeddings [1, 16, 32], concept embeddings [C, 32]."""
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 3, 4, 8, 12, generator=gen)
    prompt_embeds = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=gen)
    concept_embeds = torch.randn(num_concepts, TEXT_DIM, generator=gen)
    return latents, prompt_embeds, concept_embeds


# ----------------------------------------------------------------------------------------------------------------
# The three statistics against loops


def test_frame_separation_equals_sklearn() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 10, 5, generator=gen, dtype=torch.float64)
    x[1] += torch.arange(4, dtype=torch.float64)[:, None, None]  # one head that separates frames
    x[2] += 50.0  # a large common offset: the within-frame scatter must not cancel
    labels = np.repeat(np.arange(4), 10)
    expected = [calinski_harabasz_score(x[h].reshape(-1, 5).numpy(), labels) for h in range(3)]
    torch.testing.assert_close(frame_separation(x), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=0)
    got32 = frame_separation(x.float())
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, torch.tensor(expected, dtype=torch.float32), rtol=1e-4, atol=0)
    # bf16 features are scored in float32
    assert frame_separation(x.to(torch.bfloat16)).dtype == torch.float32
    # sklearn's convention when every frame collapses to one point
    assert frame_separation(torch.ones(1, 2, 3, 4)).item() == 1.0


def test_surrogate_tokens_equals_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 7, 4, generator=gen)
    k = torch.randn(2, 5, 4, generator=gen)
    idx = surrogate_tokens(q, k)
    assert idx.shape == (2, 5, 3) and idx.dtype == torch.long
    for h in range(2):
        for c in range(5):
            for f in range(3):
                scores = [float(q[h, f, p] @ k[h, c]) for p in range(7)]
                assert idx[h, c, f].item() == int(np.argmax(scores))


def test_gramcol_equals_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    o = torch.randn(2, 3, 7, 4, generator=gen)
    idx = torch.randint(0, 7, (2, 5, 3), generator=gen)
    got = gramcol(o, idx)
    assert got.shape == (2, 5, 3, 7)
    for h in range(2):
        for c in range(5):
            for f in range(3):
                for p in range(7):
                    expected = o[h, f, idx[h, c, f]].double() @ o[h, f, p].double()
                    torch.testing.assert_close(got[h, c, f, p], expected, rtol=1e-12, atol=1e-12)


def test_weighted_zscore_equals_repeated_slots() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 3, 5, generator=gen)
    repeated = torch.cat([maps[:3], maps[3:].expand(6, 3, 5)])  # last slot stands for 6 identical slots
    plain = (repeated - repeated.mean(0)) / (repeated.std(0) + 1e-6)
    weighted = zscore_over_slots(maps, torch.tensor([1.0, 1.0, 1.0, 6.0]))
    torch.testing.assert_close(weighted, plain[:4].double(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Naive reference: the blocks run by hand, all text slots literal, per-head loops, explicit softmax and z-score


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[1, tokens, heads * d] -> [heads, tokens, d]."""
    return x[0].view(x.shape[1], heads, -1).transpose(0, 1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-head softmax attention, one head at a time: [heads, queries, d] x [heads, keys, d] -> [heads, queries, d]."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    return torch.stack([torch.softmax(q[h] @ k[h].T * scale, dim=-1) @ v[h] for h in range(q.shape[0])])


def naive_maps(model, latents, timestep, prompt_embeds, concept_embeds, layers, top_k):
    """method.md §5-§10 literally, in the model's dtype: every map kind ``[C, F, h, w]`` by name, and the video hidden
    states after the last map layer."""
    cfg = model.config
    heads, head_dim = cfg.num_attention_heads, cfg.attention_head_dim
    num_concepts = concept_embeds.shape[0]
    num_frames, grid_h, grid_w = latents.shape[1], latents.shape[3] // 2, latents.shape[4] // 2
    num_patches = grid_h * grid_w
    temb = model.time_embedding(model.time_proj(torch.tensor([timestep])).to(latents.dtype))
    joint = model.patch_embed(prompt_embeds, latents)
    text, video = joint[:, :TEXT_LEN], joint[:, TEXT_LEN:]
    slots = torch.zeros(1, TEXT_LEN, TEXT_DIM, dtype=latents.dtype)
    slots[0, :num_concepts] = concept_embeds
    concepts = model.patch_embed.text_proj(slots)  # [1, T, dim]: padding slots are the bias
    rope = rotary_embedding(model, latents)
    labels = np.repeat(np.arange(num_frames), num_patches)
    names = ("imap", "gramcol", "cross_attention", "concept_attention")
    maps = {name: torch.zeros(num_concepts, num_frames, num_patches, dtype=torch.float64) for name in names}
    for i, block in enumerate(model.transformer_blocks[: max(layers) + 1]):
        attn = block.attn1
        shift, scale, gate, t_shift, t_scale, t_gate = block.norm1.linear(torch.nn.functional.silu(temb)).chunk(6, 1)
        ln = block.norm1.norm
        video_n = ln(video) * (1 + scale[:, None]) + shift[:, None]
        text_n = ln(text) * (1 + t_scale[:, None]) + t_shift[:, None]
        concepts_n = ln(concepts) * (1 + t_scale[:, None]) + t_shift[:, None]

        seq = torch.cat([text_n, video_n], dim=1)
        q = attn.norm_q(_split(attn.to_q(seq), heads))
        k = attn.norm_k(_split(attn.to_k(seq), heads))
        v = _split(attn.to_v(seq), heads)
        if rope is not None:
            q[:, TEXT_LEN:] = apply_rotary_emb(q[None, :, TEXT_LEN:], rope)[0]
            k[:, TEXT_LEN:] = apply_rotary_emb(k[None, :, TEXT_LEN:], rope)[0]
        cq = attn.norm_q(_split(attn.to_q(concepts_n), heads))
        ck = attn.norm_k(_split(attn.to_k(concepts_n), heads))
        cv = _split(attn.to_v(concepts_n), heads)
        out = _attend(q, k, v)  # joint attention over [text ; video]
        concept_out = _attend(cq, torch.cat([ck, k[:, TEXT_LEN:]], 1), torch.cat([cv, v[:, TEXT_LEN:]], 1))

        if i in layers:
            o_video = out[:, TEXT_LEN:].reshape(heads, num_frames, num_patches, head_dim)
            q_video = q[:, TEXT_LEN:].reshape(heads, num_frames, num_patches, head_dim)
            chi = [calinski_harabasz_score(o_video[h].reshape(-1, head_dim).numpy(), labels) for h in range(heads)]
            selected = list(np.argsort(chi)[::-1][:top_k])
            for h in range(heads):
                g = torch.zeros(TEXT_LEN, num_frames, num_patches, dtype=torch.float64)
                for c in range(TEXT_LEN):
                    for f in range(num_frames):
                        p_star = int(torch.argmax(q_video[h, f] @ ck[h, c]))
                        g[c, f] = o_video[h, f].double() @ o_video[h, f, p_star].double()
                z = (g - g.mean(0)) / (g.std(0) + 1e-6)
                maps["gramcol"] += z[:num_concepts]
                if h in selected:
                    maps["imap"] += z[:num_concepts] / top_k
                # §10: the raw logit of each video query against the concept key (mean over heads), and each video
                # output against the concept's stream output (sum over heads), one slot at a time.
                for c in range(num_concepts):
                    maps["cross_attention"][c] += (q_video[h] @ ck[h, c]).double() / heads
                    maps["concept_attention"][c] += (o_video[h] @ concept_out[h, c]).double()

        merged = attn.to_out[0](out.transpose(0, 1).reshape(1, -1, heads * head_dim))
        text = text + t_gate[:, None] * merged[:, :TEXT_LEN]
        video = video + gate[:, None] * merged[:, TEXT_LEN:]
        merged = attn.to_out[0](concept_out.transpose(0, 1).reshape(1, -1, heads * head_dim))
        concepts = concepts + t_gate[:, None] * merged
        shift, scale, gate, t_shift, t_scale, t_gate = block.norm2.linear(torch.nn.functional.silu(temb)).chunk(6, 1)
        ln = block.norm2.norm
        video = video + gate[:, None] * block.ff(ln(video) * (1 + scale[:, None]) + shift[:, None])
        text = text + t_gate[:, None] * block.ff(ln(text) * (1 + t_scale[:, None]) + t_shift[:, None])
        concepts = concepts + t_gate[:, None] * block.ff(ln(concepts) * (1 + t_scale[:, None]) + t_shift[:, None])
    shape = (num_concepts, num_frames, grid_h, grid_w)
    return {name: (m / len(layers)).view(shape) for name, m in maps.items()}, video


def _assert_maps_close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    # Z-scores divide by the spread across slots, so compare relative to the map's range.
    torch.testing.assert_close(got.double(), expected.double(), rtol=0, atol=rtol * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layers", [[0, 2], [1]], ids=["layers0-2", "layer1"])
@torch.no_grad()
def test_every_map_kind_equals_the_naive_reference(transformer, layers: list[int], dtype: torch.dtype) -> None:
    model = transformer.to(dtype)
    try:
        latents, prompt_embeds, concept_embeds = (x.to(dtype) for x in make_inputs())
        expected, video = naive_maps(model, latents, 400, prompt_embeds, concept_embeds, layers, top_k=1)

        # The hand-run blocks reproduce the model's own video stream (checks the reference itself).
        captured = {}

        def keep_video(module, args, output) -> None:
            captured["video"] = output[0]

        hook = model.transformer_blocks[max(layers)].register_forward_hook(keep_video)
        predict_velocity(model, latents, 400, prompt_embeds)
        hook.remove()
        torch.testing.assert_close(captured["video"], video, rtol=1e-5, atol=1e-5)

        for slots in ("compact", "full"):
            maps = read_concept_maps(model, latents, 400, prompt_embeds, concept_embeds, layers=layers,
                                     top_k_heads=1, concept_slots=slots)
            assert set(maps) == {"imap", "gramcol", "cross_attention", "concept_attention"}
            for name, expected_maps in expected.items():
                assert maps[name].shape == (3, 3, 4, 6), name
                assert maps[name].dtype == torch.float32 and maps[name].device.type == "cpu"
                # 1e-4 of the range in float32 (1e-5 for the Gram kinds); float64 leaves only the final cast.
                rtol = 1e-7 if dtype == torch.float64 else 1e-5 if name in ("imap", "gramcol") else 1e-4
                _assert_maps_close(maps[name], expected_maps, rtol)
        # The baselines are not the GramCol maps under another name.
        assert (maps["cross_attention"] - maps["concept_attention"]).abs().max() > 1e-2
    finally:
        transformer.float()


@pytest.mark.parametrize("num_concepts", [1, 5, TEXT_LEN - 1, TEXT_LEN])
def test_compact_equals_full(transformer, num_concepts: int) -> None:
    latents, prompt_embeds, concept_embeds = make_inputs(num_concepts)
    kwargs = dict(layers=[0, 1, 2], top_k_heads=2)
    compact = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, **kwargs)
    full = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, concept_slots="full", **kwargs)
    for name in ("imap", "gramcol", "cross_attention", "concept_attention"):
        assert compact[name].shape == (num_concepts, 3, 4, 6)
        torch.testing.assert_close(compact[name], full[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("concept_slots", ["compact", "full"])
def test_the_null_concept_reads_what_an_empty_slot_reads(transformer, concept_slots: str) -> None:
    # A class whose embedding is zero is a padding slot under another name: its map must be the null concept's.
    latents, prompt_embeds, concept_embeds = make_inputs(3)
    concept_embeds[2] = 0
    kwargs = dict(layers=[0, 1, 2], top_k_heads=2, concept_slots=concept_slots)
    maps = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, with_null=True, **kwargs)
    plain = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, **kwargs)
    for name in ("imap", "gramcol", "cross_attention", "concept_attention"):
        assert maps[name].shape == (4, 3, 4, 6)
        torch.testing.assert_close(maps[name][:3], plain[name], rtol=0, atol=0)
        torch.testing.assert_close(maps[name][3], maps[name][2], rtol=1e-5, atol=1e-5)
        assert (maps[name][3] - maps[name][0]).abs().max() > 0.1  # and not what a real concept reads
    # Every slot holding a concept leaves no null slot: the null map is then zeros.
    latents, prompt_embeds, concept_embeds = make_inputs(TEXT_LEN)
    full = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, with_null=True, **kwargs)
    assert full["imap"].shape[0] == TEXT_LEN + 1 and not full["imap"][-1].any()


# ----------------------------------------------------------------------------------------------------------------
# The processor swap


@torch.no_grad()
def test_instrumented_forward_is_bit_identical_and_restored(transformer) -> None:
    latents, prompt_embeds, concept_embeds = make_inputs()
    original = transformer.attn_processors
    stock = predict_velocity(transformer, latents, 400, prompt_embeds)
    grid = token_grid(transformer.config, latents)
    with concept_stream_attention(transformer, concept_embeds, grid, layers=[1], top_k_heads=1) as readout:
        swapped = transformer.attn_processors
        assert type(swapped["transformer_blocks.1.attn1.processor"]).__name__ == "ConceptStreamAttnProcessor"
        assert swapped["transformer_blocks.2.attn1.processor"] is original["transformer_blocks.2.attn1.processor"]
        instrumented = predict_velocity(transformer, latents, 400, prompt_embeds)
    assert (instrumented - stock).abs().max().item() == 0.0
    assert readout.num_reads == 1
    assert transformer.attn_processors == original
    assert not transformer.transformer_blocks[0]._forward_pre_hooks

    with pytest.raises(KeyboardInterrupt):
        with concept_stream_attention(transformer, concept_embeds, grid, layers=[0, 2], top_k_heads=1):
            raise KeyboardInterrupt
    assert transformer.attn_processors == original
    assert not transformer.transformer_blocks[0]._forward_pre_hooks


def test_bfloat16_runs() -> None:
    model = make_transformer(rope=True).to(torch.bfloat16)
    latents, prompt_embeds, concept_embeds = make_inputs()
    maps = read_concept_maps(model, latents.bfloat16(), 400, prompt_embeds.bfloat16(), concept_embeds.bfloat16(),
                        layers=[0, 2], top_k_heads=1)
    for name in ("imap", "gramcol"):
        assert maps[name].dtype == torch.float32 and maps[name].shape == (3, 3, 4, 6)
        assert torch.isfinite(maps[name]).all() and maps[name].abs().max() > 0


@pytest.mark.parametrize(
    ("kwargs", "num_concepts", "message"),
    [
        (dict(layers=[3], top_k_heads=1), 3, "do not exist"),
        (dict(layers=[-1], top_k_heads=1), 3, "do not exist"),
        (dict(layers=[]), 3, "empty"),
        (dict(layers=[0], top_k_heads=3), 3, "top_k_heads"),
        (dict(layers=[0], top_k_heads=1, concept_slots="half"), 3, "concept_slots"),
        (dict(layers=[0], top_k_heads=1), TEXT_LEN + 1, "class names"),
    ],
)
def test_bad_options_raise_config_error(kwargs: dict, num_concepts: int, message: str) -> None:
    model = make_transformer(rope=False)
    latents, prompt_embeds, concept_embeds = make_inputs(num_concepts)
    original = model.attn_processors
    with pytest.raises(ConfigError, match=message) as info:
        read_concept_maps(model, latents, 400, prompt_embeds, concept_embeds, **kwargs)
    assert "\n" not in str(info.value)
    assert model.attn_processors == original


def test_single_latent_frame_raises_config_error() -> None:
    model = make_transformer(rope=True)
    latents, prompt_embeds, concept_embeds = make_inputs()
    with pytest.raises(ConfigError, match="2 latent frames"):
        read_concept_maps(model, latents[:, :1], 400, prompt_embeds, concept_embeds, layers=[0], top_k_heads=1)


def test_only_the_asked_kinds_are_reduced(transformer, monkeypatch) -> None:
    """A run asking for one map kind computes only what that kind needs: GramCol sums all heads, so it never ranks
    heads by frame separation; IMAP does. The other kinds' maps are not returned."""
    import vidseg.maps.readout as readout_module

    latents, prompt_embeds, concept_embeds = make_inputs()
    both = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, layers=[0, 2], top_k_heads=1)
    calls = []
    separation = readout_module.frame_separation
    monkeypatch.setattr(readout_module, "frame_separation", lambda x: calls.append(x.shape) or separation(x))
    gram = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, kinds=("gramcol",),
                             layers=[0, 2], top_k_heads=1)
    assert set(gram) == {"gramcol"} and calls == []
    assert torch.equal(gram["gramcol"], both["gramcol"])
    imap = read_concept_maps(transformer, latents, 400, prompt_embeds, concept_embeds, kinds=("imap",),
                             layers=[0, 2], top_k_heads=1)
    assert set(imap) == {"imap"} and len(calls) == 2  # one ranking per map layer
    assert torch.equal(imap["imap"], both["imap"])


def test_a_run_reduces_only_its_map_kind(tiny_model_dir, video_factory, monkeypatch) -> None:
    """Through the pipeline: ``maps.kind: gramcol`` never ranks heads; ``imap`` does."""
    import vidseg.maps.readout as readout_module
    from vidseg.config import load_config, model_folder_config
    from vidseg.pipeline import VideoSegmenter

    def refuse(x):
        raise AssertionError("frame separation computed for a kind that does not use it")

    monkeypatch.setattr(readout_module, "frame_separation", refuse)
    video = video_factory(num_frames=9)
    config = load_config(model_dir_config=model_folder_config(tiny_model_dir), overrides=["maps.kind=gramcol"])
    config.model.source = str(tiny_model_dir)
    segmenter = VideoSegmenter.from_pretrained(config=config)
    result = segmenter.compute_saliency(video, ["dog", "person"])
    assert result.classes == ["dog", "person"] and torch.isfinite(result.sampled).all()
    config.maps.kind = "imap"
    with pytest.raises(AssertionError, match="frame separation computed"):
        segmenter.with_config(config).compute_saliency(video, ["dog", "person"])


def test_the_toy_encoder_keeps_colour_and_with_motion_where_something_moved():
    """The toy model's VAE encoder is set, not trained: each latent cell keeps its quadrants' colour, and the
    motion variant adds one channel that is large where a shape moves and small where nothing does."""
    import dataclasses

    from vidseg.models.cogvideox.backbone import encode_frames
    from vidseg.models.cogvideox.parts import build_tiny_pipeline
    from vidseg.models.tiny import TOY_SPEC
    from vidseg.toyworld import render_motion_clip
    from vidseg.video.sample import fit_frames

    clip = render_motion_clip(0, num_frames=24)  # a triangle spinning in frames 8-17, a star sliding in 5-14
    window = slice(8, 17)
    pixels = fit_frames(clip.frames[window], TOY_SPEC.height, TOY_SPEC.width)[0]
    plain = encode_frames(build_tiny_pipeline(TOY_SPEC).vae, pixels)[0]
    motion = encode_frames(build_tiny_pipeline(dataclasses.replace(TOY_SPEC, vae_encoder="colour-motion")).vae,
                           pixels)[0]  # [F, C, h, w]
    assert torch.allclose(plain[:, :12], motion[:, :12], atol=1e-4)  # the colour channels are the same
    assert plain[:, 14].abs().max() < 1e-3  # the plain encoder leaves the channel empty
    truth = np.zeros(clip.labels[window].shape, bool)
    for mask in clip.verbs.values():
        truth |= mask[window]
    for k, frames in ((1, range(1, 5)), (2, range(5, 9))):  # latent frames 1 and 2 of the window
        moved = truth[list(frames)].any(0).reshape(32, 4, 48, 4).any(axis=(1, 3))
        channel = motion[k, 14].abs().numpy()
        assert channel[moved].mean() > 3 * channel[~moved].mean()
