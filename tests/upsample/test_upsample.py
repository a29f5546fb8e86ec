from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidseg.config import UpsampleConfig
from vidseg.errors import ConfigError, ModelLoadError
from vidseg.upsample import (
    AnyUp,
    AnyUpUpsampler,
    BilinearUpsampler,
    GuidedFilterUpsampler,
    get_upsampler,
    load_anyup,
    upsample_probs,
)
from vidseg.upsample.anyup import windowed_cross_attention

# The released checkpoints' tensors (reference.md section 1.4), written out independently of the module.
_RESBLOCK_PREFIXES = ["image_encoder", "key_encoder", "query_encoder", "key_features_encoder", "aggregation"]
CHECKPOINT_SHAPES = {
    "image_encoder.0.weight": (128, 3, 1, 1),
    "key_encoder.0.weight": (128, 128, 1, 1),
    "query_encoder.0.weight": (128, 128, 1, 1),
    "key_features_encoder.0.basis": (128, 1, 5, 5),
    "aggregation.0.weight": (128, 256, 3, 3),
    "cross_decode.conv2d.weight": (128, 128, 3, 3),
    "cross_decode.cross_attn.norm_q.weight": (128,),
    "cross_decode.cross_attn.norm_k.weight": (128,),
    "cross_decode.cross_attn.attention.in_proj_weight": (384, 128),
    "cross_decode.cross_attn.attention.in_proj_bias": (384,),
    "cross_decode.cross_attn.attention.out_proj.weight": (128, 128),
    "cross_decode.cross_attn.attention.out_proj.bias": (128,),
    "rope.freqs": (2, 128),
}
for _prefix in _RESBLOCK_PREFIXES:
    for _n in (1, 2):
        for _i in (0, 3):
            CHECKPOINT_SHAPES[f"{_prefix}.{_n}.block.{_i}.weight"] = (128,)
            CHECKPOINT_SHAPES[f"{_prefix}.{_n}.block.{_i}.bias"] = (128,)
        for _i in (2, 5):
            CHECKPOINT_SHAPES[f"{_prefix}.{_n}.block.{_i}.weight"] = (128, 128, 1, 1)


def random_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint-format state_dict with random values (norm weights away from 1, biases away from 0)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in CHECKPOINT_SHAPES.items():
        value = torch.randn(shape, generator=gen)
        if len(shape) == 1 and key.endswith("weight"):
            value = 1 + 0.3 * value
        elif len(shape) > 1:
            value = value / (shape[1] * int(np.prod(shape[2:]))) ** 0.5
        state[key] = value * (0.1 if key.endswith("bias") else 1.0)
    state["rope.freqs"] = AnyUp().rope.freqs.detach() * (1 + 0.05 * torch.randn(2, 128, generator=gen))
    return state


# ---- a straightforward dense masked AnyUp, from the state_dict alone ----

def _resblock(x, sd, prefix):
    h = F.conv2d(F.silu(F.group_norm(x, 8, sd[f"{prefix}.block.0.weight"], sd[f"{prefix}.block.0.bias"])),
                 sd[f"{prefix}.block.2.weight"])
    h = F.conv2d(F.silu(F.group_norm(h, 8, sd[f"{prefix}.block.3.weight"], sd[f"{prefix}.block.3.bias"])),
                 sd[f"{prefix}.block.5.weight"])
    return x + h


def _encode(x, sd, prefix, reflect_pad=0):
    if reflect_pad:
        x = F.pad(x, (reflect_pad,) * 4, mode="reflect")
    x = F.conv2d(x, sd[f"{prefix}.0.weight"])
    return _resblock(_resblock(x, sd, f"{prefix}.1"), sd, f"{prefix}.2")


def dense_anyup(sd, image, features, output_size=None):
    B, _, H, W = image.shape
    _, C, h, w = features.shape
    Ho, Wo = output_size or (H, W)
    enc = _encode(image, sd, "image_encoder")
    coords = torch.stack(torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij"), -1)
    angle = coords.view(1, H * W, 2) @ sd["rope.freqs"]
    flat = enc.permute(0, 2, 3, 1).reshape(B, H * W, 128)
    first, second = flat.chunk(2, -1)
    flat = flat * angle.cos() + torch.cat([-second, first], -1) * angle.sin()
    enc = flat.view(B, H, W, 128).permute(0, 3, 1, 2)
    q = F.adaptive_avg_pool2d(_encode(enc, sd, "query_encoder"), (Ho, Wo))
    k = F.adaptive_avg_pool2d(_encode(enc, sd, "key_encoder"), (h, w))
    # Learned feature unification with the channel-major layout of the grouped convolution.
    normed = F.normalize(features, dim=1)
    basis = sd["key_features_encoder.0.basis"]
    resp = F.conv2d(F.pad(normed, (2, 2, 2, 2)), basis.repeat(C, 1, 1, 1), groups=C)
    taps = F.conv2d(F.pad(torch.ones(1, 1, h, w), (2, 2, 2, 2)), torch.ones(1, 1, 5, 5))
    lfu = (resp / taps).view(B, 128, C, h, w).softmax(1).mean(2)
    kf = _resblock(_resblock(lfu, sd, "key_features_encoder.1"), sd, "key_features_encoder.2")
    k = _encode(torch.cat([k, kf], 1), sd, "aggregation", reflect_pad=1)
    return dense_cross_decode(sd, q, k, features)


def dense_cross_decode(sd, queries, keys, values):
    """3x3 conv on the queries, then the dense masked attention."""
    return dense_masked_attention(sd, F.conv2d(queries, sd["cross_decode.conv2d.weight"], padding=1), keys, values)


def dense_masked_attention(sd, q, keys, values):
    """Every query attends over all h*w keys with everything outside its +-0.1 window blocked; the
    head-averaged attention weights the raw values."""
    B, _, Ho, Wo = q.shape
    _, C, h, w = values.shape
    mha = torch.nn.MultiheadAttention(128, 4, batch_first=True)
    mha.in_proj_weight.data.copy_(sd["cross_decode.cross_attn.attention.in_proj_weight"])
    mha.in_proj_bias.data.copy_(sd["cross_decode.cross_attn.attention.in_proj_bias"])
    norm_q, norm_k = sd["cross_decode.cross_attn.norm_q.weight"], sd["cross_decode.cross_attn.norm_k.weight"]
    qn = F.rms_norm(q.permute(0, 2, 3, 1).reshape(B, Ho * Wo, 128), (128,), norm_q)
    kn = F.rms_norm(keys.permute(0, 2, 3, 1).reshape(B, h * w, 128), (128,), norm_k)
    cy, cx = (torch.arange(Ho) + 0.5) / Ho, (torch.arange(Wo) + 0.5) / Wo
    r0, r1 = ((cy - 0.1).clamp(0, 1) * h).floor(), ((cy + 0.1).clamp(0, 1) * h).ceil()
    c0, c1 = ((cx - 0.1).clamp(0, 1) * w).floor(), ((cx + 0.1).clamp(0, 1) * w).ceil()
    rows_ok = (torch.arange(h) >= r0[:, None]) & (torch.arange(h) < r1[:, None])
    cols_ok = (torch.arange(w) >= c0[:, None]) & (torch.arange(w) < c1[:, None])
    blocked = ~(rows_ok[:, None, :, None] & cols_ok[None, :, None, :]).reshape(Ho * Wo, h * w)
    flat_values = values.permute(0, 2, 3, 1).reshape(B, h * w, C)
    outs = []
    for start in range(0, Ho * Wo, 4096):
        _, attn = mha(qn[:, start:start + 4096], kn, kn, attn_mask=blocked[start:start + 4096],
                      average_attn_weights=True)
        outs.append(attn @ flat_values)
    return torch.cat(outs, 1).view(B, Ho, Wo, C).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("anyup") / "anyup_paper.pth"
    torch.save(random_checkpoint(), path)
    return path


def test_checkpoint_format_loads_strictly(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True)
    assert len(state) == 73 and sum(v.numel() for v in state.values()) == 878_080
    model = AnyUp()
    model.load_state_dict(state, strict=True)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == CHECKPOINT_SHAPES
    assert torch.equal(load_anyup(checkpoint_path).rope.freqs, state["rope.freqs"])


def test_bad_checkpoints_raise_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_anyup(tmp_path / "missing.pth")
    partial = random_checkpoint()
    partial.pop("rope.freqs")
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ModelLoadError, match="not an AnyUp checkpoint"):
        load_anyup(tmp_path / "partial.pth")


@pytest.mark.parametrize(
    "image_size, feature_size, channels, output_size, max_queries",
    [
        ((64, 96), (4, 6), 5, None, 16384),  # x16, chunks span several row runs
        ((50, 70), (7, 9), 1, None, 300),  # non-integer ratio, one channel, many small chunks
        ((48, 64), (6, 8), 3, (40, 56), 500),  # queries pooled to another output size
        ((33, 45), (11, 3), 7, None, 200),  # windows covering whole rows / columns
    ],
)
def test_windowed_anyup_equals_dense_masked_formulation(image_size, feature_size, channels, output_size,
                                                        max_queries):
    gen = torch.Generator().manual_seed(1)
    state = random_checkpoint(seed=2)
    model = AnyUp(max_queries=max_queries).eval()
    model.load_state_dict(state)
    image = torch.randn(2, 3, *image_size, generator=gen)
    features = 2 * torch.randn(2, channels, *feature_size, generator=gen)  # raw values, not a distribution
    with torch.no_grad():
        windowed = model(image, features, output_size)
        dense = dense_anyup(state, image, features, output_size)
    assert windowed.shape == (2, channels, *(output_size or image_size))
    assert (windowed - dense).abs().max().item() <= 1e-5


def test_anyup_keeps_class_probabilities_on_the_simplex():
    model = AnyUp().eval()
    model.load_state_dict(random_checkpoint())
    probs = torch.rand(1, 124, 5, 7).pow(3)
    probs = probs / probs.sum(1, keepdim=True)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 80, 112), probs)
    assert torch.allclose(out.sum(1), torch.ones(1, 80, 112), atol=1e-5)
    assert out.min() >= probs.min() - 1e-6 and out.max() <= probs.max() + 1e-6


def _frames_and_probs(T=2, K=4, H=96, W=144, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)
    probs = rng.random((T, K, H // 16, W // 16)).astype(np.float32) ** 3
    return frames, probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["bilinear", "guided", "anyup"])
def test_upsampled_probabilities_sum_to_one(method, checkpoint_path):
    frames, probs = _frames_and_probs()
    out = upsample_probs(frames, torch.from_numpy(probs), method=method, anyup_checkpoint=checkpoint_path,
                         device="cpu")
    assert out.shape == (2, 4, 96, 144) and out.dtype == torch.float32
    assert torch.allclose(out.sum(1), torch.ones(2, 96, 144), atol=1e-5)
    assert out.min() >= 0


def test_guided_filter_handles_many_classes_and_snaps_to_edges():
    frames = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    frames[0, :, 29:] = 255  # an edge at column 29, off the 16-pixel grid
    probs = np.zeros((1, 200, 4, 4), dtype=np.float32)
    probs[0, 0, :, :2], probs[0, 1, :, 2:] = 1.0, 1.0
    guided = upsample_probs(frames, probs, method="guided")[0]
    bilinear = upsample_probs(frames, probs, method="bilinear")[0]
    truth = np.arange(64) >= 29
    assert guided.shape == (200, 64, 64)
    assert (guided.argmax(0).numpy()[32] == truth).mean() > (bilinear.argmax(0).numpy()[32] == truth).mean()


def test_get_upsampler_accepts_names_configs_and_callables(checkpoint_path):
    assert isinstance(get_upsampler("bilinear"), BilinearUpsampler)
    guided = get_upsampler(UpsampleConfig(guided_radius=1.0, guided_eps=0.05))
    assert isinstance(guided, GuidedFilterUpsampler) and guided.radius == 1.0 and guided.eps == 0.05
    config = UpsampleConfig(method="anyup", anyup_checkpoint=str(checkpoint_path))
    assert isinstance(get_upsampler(config, device="cpu"), AnyUpUpsampler)

    def nearest(frame, probs):
        return probs.repeat(frame.shape[0] // probs.shape[1], 1).repeat(frame.shape[1] // probs.shape[2], 2)

    assert get_upsampler(nearest) is nearest
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        get_upsampler("anyup")
    with pytest.raises(ConfigError, match="unknown upsampler"):
        get_upsampler("bicubic")


@pytest.mark.benchmark
def test_windowed_attention_is_much_faster_than_dense_masked_at_480x720():
    torch.manual_seed(0)
    state = random_checkpoint()
    model = AnyUp().eval()
    model.load_state_dict(state)
    queries, keys = torch.randn(1, 128, 480, 720), torch.randn(1, 128, 30, 45)
    values = torch.randn(1, 5, 30, 45).softmax(1)
    with torch.no_grad():
        start = time.perf_counter()
        conv_queries = model.cross_decode.conv2d(queries)  # shared by both formulations
        conv_s = time.perf_counter() - start
        start = time.perf_counter()
        windowed = windowed_cross_attention(model.cross_decode, conv_queries[0].permute(1, 2, 0),
                                            keys[0].permute(1, 2, 0), values[0], model.max_queries)
        windowed_s = time.perf_counter() - start
        start = time.perf_counter()
        dense = dense_masked_attention(state, conv_queries, keys, values)[0]
        dense_s = time.perf_counter() - start
        start = time.perf_counter()
        model(torch.randn(1, 3, 480, 720), values)
        forward_s = time.perf_counter() - start
    print(f"\nAnyUp 480x720 from 30x45, C=5, {torch.get_num_threads()} thread(s): attention windowed "
          f"{windowed_s:.2f} s vs dense masked {dense_s:.2f} s ({dense_s / windowed_s:.1f}x); query 3x3 conv "
          f"{conv_s:.2f} s; whole forward {forward_s:.2f} s")
    assert (windowed - dense).abs().max().item() <= 1e-5
    assert dense_s / windowed_s >= 10
