"""AnyUp: universal feature upsampling, re-implemented for checkpoint compatibility and windowed attention.

Attribution (CC BY 4.0): this module re-implements the architecture of
"AnyUp: Universal Feature Upsampling", Wimmer, Truong, Rakotosaona, Oechsle, Tombari, Schiele and Lenssen,
arXiv 2510.12764 (ICLR 2026), https://github.com/wimmerth/anyup, licensed under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Changes: written from scratch for vidseg (no code copied); the
windowed cross-attention is computed directly over each query's key window instead of as dense attention with
an ``H*W x h*w`` mask; full-resolution layers run in chunks. The released checkpoints (``anyup_paper.pth``,
``anyup_multi_backbone.pth``) load strictly because the module tree and parameter names are the same.

Shapes: guidance image ``[B, 3, H, W]`` (ImageNet-normalised), features ``[B, C, h, w]`` with any ``C``,
output ``[B, C, H', W']``. Every output vector is a convex combination of the input feature vectors inside its
window, so class-probability maps stay on the simplex.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidseg.errors import ModelLoadError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ResBlock(nn.Module):
    """GroupNorm(8) -> SiLU -> 1x1 conv -> GroupNorm(8) -> SiLU -> 1x1 conv, plus the identity: a per-pixel MLP.

    Indices 1 and 4 of ``block`` are the parameter-free SiLUs; the checkpoint names the others block.0/2/3/5.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _FeatureUnification(nn.Module):
    """Maps features with any channel count to ``num_bases`` channels (the LFU layer).

    Every input channel is convolved with every basis kernel (zero padding, divided by the number of in-image
    taps). The grouped-conv output is channel-major (index ``c * num_bases + basis``); like the released model,
    that flat buffer is read as ``[B, num_bases, C, h, w]`` before the softmax over dim 1 and the mean over dim 2.
    For ``C > 1`` this differs from "softmax over bases per channel", and the checkpoints expect it.
    """

    def __init__(self, num_bases: int = 128, kernel_size: int = 5) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(num_bases, 1, kernel_size, kernel_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        B, C, h, w = features.shape
        num_bases, _, k, _ = self.basis.shape
        pad = k // 2
        responses = F.conv2d(F.pad(features, (pad,) * 4), self.basis.repeat(C, 1, 1, 1), groups=C)  # [B, C*nb, h, w]
        ones = torch.ones(1, 1, h, w, dtype=features.dtype, device=features.device)
        taps = F.conv2d(F.pad(ones, (pad,) * 4), torch.ones(1, 1, k, k, dtype=features.dtype, device=features.device))
        responses = (responses / taps).view(B, num_bases, C, h, w)  # the channel-major buffer, re-read
        return responses.softmax(dim=1).mean(dim=2)


class _RoPE2d(nn.Module):
    """2-D rotary position encoding over ``linspace(0, 1)`` pixel coordinates (inclusive), learned frequencies."""

    def __init__(self, dim: int = 128, theta: float = 100.0) -> None:
        super().__init__()
        freqs_1d = theta ** torch.linspace(0, -1, dim // 4)
        freqs_1d = torch.cat([freqs_1d, freqs_1d])
        freqs = torch.zeros(2, dim)
        freqs[0, : dim // 2] = freqs_1d  # the row coordinate drives the first half of the channels
        freqs[1, dim // 2:] = freqs_1d  # the column coordinate the second half
        self.freqs = nn.Parameter(freqs * 2 * math.pi)

    def rotate_(self, pixels: torch.Tensor, height: int, width: int, rows_per_chunk: int) -> None:
        """Rotate ``pixels`` ``[H*W, D]`` (row-major pixels, channels last) in place."""
        row_pos = torch.linspace(0, 1, height, device=pixels.device, dtype=pixels.dtype)
        col_pos = torch.linspace(0, 1, width, device=pixels.device, dtype=pixels.dtype)
        freqs = self.freqs.to(pixels.dtype)
        for start in range(0, height, rows_per_chunk):
            stop = min(start + rows_per_chunk, height)
            angle = (row_pos[start:stop, None, None] * freqs[0] + col_pos[None, :, None] * freqs[1]).flatten(0, 1)
            chunk = pixels[start * width: stop * width]  # [n*W, D]
            first, second = chunk.chunk(2, dim=-1)
            rotated = torch.cat([-second, first], dim=-1)  # rotate_half: (a, b) -> (-b, a)
            chunk.mul_(angle.cos()).addcmul_(rotated, angle.sin())


class _AttentionWeights(nn.Module):
    """The parameters of the released model's ``nn.MultiheadAttention``; only the q and k projections are used.

    The v slice of ``in_proj_*`` and ``out_proj`` exist so that checkpoints load strictly: the model's output is
    the head-averaged attention applied to the raw features, not MHA's own output.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)


class _CrossAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_q = nn.RMSNorm(dim)
        self.norm_k = nn.RMSNorm(dim)
        self.attention = _AttentionWeights(dim)


class _CrossDecode(nn.Module):
    """3x3 conv on the queries, RMSNorm and q/k projections, then windowed multi-head attention whose
    head-averaged probabilities weight the raw low-resolution features."""

    def __init__(self, dim: int, num_heads: int, window_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_ratio = window_ratio
        self.conv2d = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.cross_attn = _CrossAttention(dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                max_queries: int) -> torch.Tensor:
        """``queries`` ``[B, D, H, W]``, ``keys`` ``[B, D, h, w]``, ``values`` ``[B, C, h, w]`` -> ``[B, C, H, W]``."""
        queries = self.conv2d(queries).permute(0, 2, 3, 1)  # [B, H, W, D]
        keys = keys.permute(0, 2, 3, 1)  # [B, h, w, D]
        return torch.stack([windowed_cross_attention(self, q, k, v, max_queries)
                            for q, k, v in zip(queries, keys, values)])


class AnyUp(nn.Module):
    """AnyUp feature upsampler (paper defaults: qk_dim 128, 4 heads, LFU kernel 5, window ratio 0.1).

    ``load_state_dict(torch.load("anyup_paper.pth"), strict=True)`` works with the released checkpoints.
    Full-resolution stages run channels-last in chunks of ``max_queries`` pixels (GroupNorm statistics are
    gathered over the whole image first), so memory stays at a few full-resolution 128-channel buffers.
    """

    def __init__(self, qk_dim: int = 128, num_heads: int = 4, kernel_size_lfu: int = 5,
                 window_ratio: float = 0.1, max_queries: int = 16384) -> None:
        super().__init__()
        self.max_queries = max_queries
        self.image_encoder = _encoder(3, qk_dim)
        self.key_encoder = _encoder(qk_dim, qk_dim)
        self.query_encoder = _encoder(qk_dim, qk_dim)
        self.key_features_encoder = nn.Sequential(
            _FeatureUnification(qk_dim, kernel_size_lfu), _ResBlock(qk_dim), _ResBlock(qk_dim)
        )
        self.cross_decode = _CrossDecode(qk_dim, num_heads, window_ratio)
        self.aggregation = _encoder(2 * qk_dim, qk_dim, kernel_size=3)
        self.rope = _RoPE2d(qk_dim)

    def forward(self, image: torch.Tensor, features: torch.Tensor,
                output_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Upsample ``features`` ``[B, C, h, w]`` guided by ``image`` ``[B, 3, H, W]`` (ImageNet-normalised)
        to ``[B, C, *output_size]`` (default ``(H, W)``)."""
        if image.ndim != 4 or features.ndim != 4 or image.shape[0] != features.shape[0] or image.shape[1] != 3:
            raise ValueError(f"AnyUp expects image [B, 3, H, W] and features [B, C, h, w] with the same B; "
                             f"got {tuple(image.shape)} and {tuple(features.shape)}")
        output_size = tuple(output_size) if output_size is not None else tuple(image.shape[-2:])
        return torch.cat([self._upsample_one(image[b: b + 1], features[b: b + 1], output_size)
                          for b in range(image.shape[0])])

    def _upsample_one(self, image: torch.Tensor, features: torch.Tensor, output_size: tuple[int, ...]) -> torch.Tensor:
        _, _, H, W = image.shape
        h, w = features.shape[-2:]
        chunk = self.max_queries
        pixels = image[0].permute(1, 2, 0).reshape(H * W, 3)  # row-major pixels, channels last
        encoded = _run_encoder(self.image_encoder, pixels, chunk)
        self.rope.rotate_(encoded, H, W, max(1, chunk // W))

        keys = _run_encoder(self.key_encoder, encoded, chunk)
        keys = F.adaptive_avg_pool2d(_as_image(keys, H, W), (h, w))
        keys = self.aggregation(torch.cat([keys, self.key_features_encoder(F.normalize(features, dim=1))], dim=1))
        queries = _run_encoder(self.query_encoder, encoded, chunk)
        del encoded
        queries = _as_image(queries, H, W)
        if (H, W) != output_size:
            queries = F.adaptive_avg_pool2d(queries, output_size)
        return self.cross_decode(queries, keys, features, chunk)


def _encoder(in_channels: int, dim: int, kernel_size: int = 1) -> nn.Sequential:
    """First conv (reflect padding, no bias) and two ResBlocks."""
    first = nn.Conv2d(in_channels, dim, kernel_size, padding=kernel_size // 2, padding_mode="reflect", bias=False)
    return nn.Sequential(first, _ResBlock(dim), _ResBlock(dim))


def _as_image(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[H*W, D]`` channels-last pixels -> a ``[1, D, H, W]`` view (channels-last memory)."""
    return pixels.view(1, height, width, -1).permute(0, 3, 1, 2)


class _GroupMoments:
    """Per-channel sums of a full-resolution activation, gathered chunk by chunk, for an exact GroupNorm.

    Sums are taken around the first chunk's channel means (float32 per chunk, float64 in total), so the
    variance does not suffer from cancellation when the mean is large.
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.sum = self.sum_sq = 0.0

    def update(self, chunk: torch.Tensor) -> None:
        if self.shift is None:
            self.shift = chunk.mean(0)
        centred = chunk - self.shift
        self.sum = self.sum + centred.sum(0).double()
        self.sum_sq = self.sum_sq + (centred * centred).sum(0).double()
        self.count += chunk.shape[0]

    def affine(self, norm: nn.GroupNorm) -> tuple[torch.Tensor, torch.Tensor]:
        """GroupNorm as a per-channel ``x * scale + offset``: ``([D], [D])`` in the activation's dtype."""
        n = self.count
        channel_mean = self.shift.double() + self.sum / n
        channel_m2 = self.sum_sq - self.sum * self.sum / n  # sum of squared deviations from the channel mean
        groups = norm.num_groups
        group_mean = channel_mean.view(groups, -1).mean(1, keepdim=True)
        group_m2 = (channel_m2.view(groups, -1) + n * (channel_mean.view(groups, -1) - group_mean) ** 2).sum(1)
        group_var = group_m2 / (n * channel_mean.numel() // groups)
        inv_std = (group_var + norm.eps).rsqrt()[:, None].expand(groups, channel_mean.numel() // groups).reshape(-1)
        mean = group_mean.expand(groups, channel_mean.numel() // groups).reshape(-1)
        scale = norm.weight.double() * inv_std
        offset = norm.bias.double() - mean * scale
        return scale.to(self.shift.dtype), offset.to(self.shift.dtype)


def _run_encoder(encoder: nn.Sequential, pixels: torch.Tensor, chunk: int) -> torch.Tensor:
    """Apply a 1x1-conv encoder (first conv + two ResBlocks) to ``[N, D_in]`` pixels -> ``[N, D]`` in chunks.

    Equal to running the module on the image: 1x1 convs are per-pixel matrix products, and every GroupNorm
    uses statistics of the whole image, gathered in the pass that produced its input.
    """
    first, *blocks = encoder
    weight = first.weight[:, :, 0, 0].t()  # [D_in, D]
    out = pixels.new_empty(pixels.shape[0], weight.shape[1])
    moments = _GroupMoments()
    for start in range(0, pixels.shape[0], chunk):
        moments.update(torch.mm(pixels[start: start + chunk], weight, out=out[start: start + chunk]))
    for i, block in enumerate(blocks):
        out, moments = _run_resblock(block, out, moments, chunk, track_output=i < len(blocks) - 1)
    return out


def _run_resblock(block: _ResBlock, x: torch.Tensor, x_moments: _GroupMoments, chunk: int,
                  track_output: bool) -> tuple[torch.Tensor, _GroupMoments | None]:
    """``x + block(x)`` over ``[N, D]`` pixels; the output's moments only when a GroupNorm reads it next."""
    norm_in, _, conv_in, norm_mid, _, conv_out = block.block
    scale, offset = x_moments.affine(norm_in)
    w_in, w_out = conv_in.weight[:, :, 0, 0].t(), conv_out.weight[:, :, 0, 0].t()
    hidden = torch.empty_like(x)
    hidden_moments = _GroupMoments()
    for start in range(0, x.shape[0], chunk):
        part = torch.addcmul(offset, x[start: start + chunk], scale)
        hidden_moments.update(torch.mm(F.silu(part, inplace=True), w_in, out=hidden[start: start + chunk]))
    scale, offset = hidden_moments.affine(norm_mid)
    out_moments = _GroupMoments() if track_output else None
    for start in range(0, x.shape[0], chunk):
        stop = start + chunk
        part = F.silu(torch.addcmul(offset, hidden[start:stop], scale), inplace=True)
        torch.addmm(x[start:stop], part, w_out, out=hidden[start:stop])  # x + block(x)
        if out_moments is not None:
            out_moments.update(hidden[start:stop])
    return hidden, out_moments


def windowed_cross_attention(decode: _CrossDecode, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        max_queries: int) -> torch.Tensor:
    """Each output pixel attends only to the low-resolution cells in its window (``window_bounds``).

    ``queries`` ``[H, W, D]`` (after the 3x3 conv), ``keys`` ``[h, w, D]``, ``values`` ``[C, h, w]`` (the raw
    features) -> ``[C, H, W]``. Windows are separable: output row i sees key rows ``[row_lo[i], row_hi[i])`` and
    output column j key columns ``[col_lo[j], col_hi[j])``. Output rows with the same ``row_lo`` and output
    columns with the same ``col_lo`` share one key window, so the work is a batch of small dense attentions,
    one per (row run, column tile), with a mask only for the few window cells past ``row_hi`` / ``col_hi``.
    """
    attn = decode.cross_attn
    H, W, D = queries.shape
    h, w, _ = keys.shape
    C = values.shape[0]
    device = queries.device
    num_heads, head_dim = decode.num_heads, D // decode.num_heads
    w_q, w_k = attn.attention.in_proj_weight[:D], attn.attention.in_proj_weight[D: 2 * D]
    b_q, b_k = attn.attention.in_proj_bias[:D], attn.attention.in_proj_bias[D: 2 * D]
    w_q, b_q = w_q * head_dim ** -0.5, b_q * head_dim ** -0.5  # the attention scale, folded into the projection
    keys = F.linear(attn.norm_k(keys), w_k, b_k)  # [h, w, D]
    values = values.permute(1, 2, 0)  # [h, w, C]

    row_lo, row_hi = (t.to(device) for t in window_bounds(H, h, decode.window_ratio))
    col_lo, col_hi = (t.to(device) for t in window_bounds(W, w, decode.window_ratio))
    span_r, span_c = int((row_hi - row_lo).max()), int((col_hi - col_lo).max())
    num_keys = span_r * span_c

    # Column tiles: runs of equal col_lo cut into pieces of at most `tile` columns, padded by repeating the
    # last column (padding is computed and dropped).
    tile = max(1, -(-W // w))
    tile_cols = [torch.arange(a, b, device=device) for a, b in _runs_of_equal(col_lo, tile)]
    tile_valid = torch.stack([torch.arange(tile, device=device) < len(c) for c in tile_cols])  # [T, L]
    tile_cols = torch.stack([F.pad(c, (0, tile - len(c)), value=int(c[-1])) for c in tile_cols])  # [T, L]
    tile_start = col_lo[tile_cols[:, 0]]  # [T]
    key_cols = tile_start[:, None] + torch.arange(span_c, device=device)  # [T, span_c]
    col_ok = key_cols[:, None, :] < col_hi[tile_cols][:, :, None]  # [T, L, span_c]
    key_cols = key_cols.clamp(max=w - 1)
    num_tiles = tile_cols.shape[0]
    out_cols = tile_cols[tile_valid]  # [W]: where each computed column goes

    out = queries.new_empty(H, W, C)
    row_offsets = torch.arange(span_r, device=device)
    rows_per_chunk = max(1, max_queries // (num_tiles * tile))
    masks: dict[bytes, torch.Tensor] = {}  # additive -inf masks by row pattern: interior runs share one
    for start, stop in _runs_of_equal(row_lo, rows_per_chunk):
        n = stop - start
        key_rows = (row_lo[start] + row_offsets).clamp(max=h - 1)  # [span_r]
        row_ok = row_lo[start] + row_offsets < row_hi[start:stop, None]  # [n, span_r]
        pattern = row_ok.cpu().numpy().tobytes()
        if pattern not in masks:
            allowed = row_ok[None, :, None, :, None] & col_ok[:, None, :, None, :]  # [T, n, L, span_r, span_c]
            masks[pattern] = torch.zeros(allowed.shape, dtype=queries.dtype, device=device).masked_fill_(
                ~allowed, float("-inf")).reshape(num_tiles, 1, n * tile, num_keys)
        # Keys and values of every tile's window: [T, span_r, span_c, .] -> [T, M, .].
        k_win = keys[key_rows[None, :, None], key_cols[:, None, :]].reshape(num_tiles, num_keys, num_heads, head_dim)
        v_win = values[key_rows[None, :, None], key_cols[:, None, :]].reshape(num_tiles, num_keys, C)
        q = F.linear(attn.norm_q(queries[start:stop][:, tile_cols]), w_q, b_q)  # [n, T, L, D]
        q = q.view(n, num_tiles, tile, num_heads, head_dim).permute(1, 3, 0, 2, 4).reshape(
            num_tiles, num_heads, n * tile, head_dim)
        logits = torch.matmul(q, k_win.permute(0, 2, 3, 1))  # [T, heads, n*L, M]
        probs = logits.add_(masks[pattern]).softmax(dim=-1).mean(dim=1)  # [T, n*L, M]
        result = torch.bmm(probs, v_win).view(num_tiles, n, tile, C).permute(1, 0, 2, 3)  # [n, T, L, C]
        out[start:stop, out_cols] = result[:, tile_valid]
    return out.permute(2, 0, 1)


def window_bounds(out_size: int, in_size: int, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Key window ``[lo, hi)`` on an ``in_size`` grid for each of ``out_size`` output positions along one axis.

    Output centre ``(i + 0.5) / out_size`` sees ``floor(clamp(centre - ratio) * in_size)`` up to
    ``ceil(clamp(centre + ratio) * in_size)`` (exclusive), as in the released model.
    """
    centre = (torch.arange(out_size, dtype=torch.float32) + 0.5) / out_size
    lo = ((centre - ratio).clamp(0.0, 1.0) * in_size).floor().long()
    hi = ((centre + ratio).clamp(0.0, 1.0) * in_size).ceil().long()
    return lo, hi


def _runs_of_equal(values: torch.Tensor, max_len: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of equal consecutive values, each at most ``max_len`` long."""
    _, counts = torch.unique_consecutive(values, return_counts=True)
    runs, start = [], 0
    for count in counts.tolist():
        for sub in range(start, start + count, max_len):
            runs.append((sub, min(sub + max_len, start + count)))
        start += count
    return runs


def load_anyup(checkpoint_path: str | Path, *, device: str | torch.device = "cpu") -> AnyUp:
    """Build ``AnyUp`` and load a released checkpoint (a plain state_dict) strictly, in eval mode."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise ModelLoadError(f"AnyUp checkpoint {str(path)!r} does not exist; download anyup_paper.pth or "
                             f"anyup_multi_backbone.pth from github.com/wimmerth/anyup releases")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise ModelLoadError(f"cannot read AnyUp checkpoint {str(path)!r}: {first_line(exc)}") from None
    model = AnyUp()
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, AttributeError) as exc:
        raise ModelLoadError(f"{str(path)!r} is not an AnyUp checkpoint (keys or shapes differ: "
                             f"{first_line(exc)})") from None
    return model.to(device).eval()
