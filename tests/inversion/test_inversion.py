"""VAE encoding, the read-out timestep, DDIM inversion and the official renoise mode."""

from __future__ import annotations

import pytest
import torch

from vidseg.inversion import invert_ddim, readout_timestep, renoise_ddim, timestep_grid
from vidseg.models.cogvideox.backbone import encode_frames, predict_velocity
from vidseg.models.cogvideox.parts import COGVIDEOX_2B_SCHEDULER, COGVIDEOX_5B_SCHEDULER
from vidseg.models.base import TextEmbeddings
from vidseg.models.hub import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def clip_latents(tiny):
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(9, 3, 64, 96, generator=generator) * 2 - 1
    return encode_frames(tiny.vae, frames)


@pytest.fixture(scope="module")
def prompt_embeds(tiny):
    return tiny.encode_text("A video of a dog.", ["dog"]).prompt_embeds


def predictor(model, prompt_embeds):
    """The backbone's prediction with the caption bound, as ``noise_to_readout`` hands it to the inverter."""
    text = TextEmbeddings(prompt_embeds, torch.zeros(0))
    return lambda z, t: model.predict(z, t, text)


def test_readout_timestep_of_the_real_schedulers():
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    ddim = CogVideoXDDIMScheduler(**COGVIDEOX_2B_SCHEDULER)
    assert readout_timestep(ddim, 50, 30) == 399
    grid = timestep_grid(ddim, 50)
    assert grid[:3] == [999, 979, 959] and grid[-1] == 19 and len(grid) == 50
    assert timestep_grid(ddim, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    # method.md §4.1: ᾱ_399 = 0.1786 for 2B (SNR shift 3), 0.3935 for 5B (shift 1); ᾱ_999 = 0 (zero terminal SNR).
    assert float(ddim.alphas_cumprod[399]) == pytest.approx(0.1786, abs=1e-4)
    assert float(ddim.alphas_cumprod[999]) == 0.0
    dpm = CogVideoXDPMScheduler(**COGVIDEOX_5B_SCHEDULER)
    assert readout_timestep(dpm, 50, 30) == 399
    assert float(dpm.alphas_cumprod[399]) == pytest.approx(0.3935, abs=1e-4)
    with pytest.raises(ValueError, match="readout_index"):
        readout_timestep(ddim, 50, 50)


def test_encode_frames(tiny, clip_latents):
    assert clip_latents.shape == (1, 3, 4, 8, 12) and clip_latents.dtype == torch.float32  # [B, F, C, h, w]
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(9, 3, 64, 96, generator=generator) * 2 - 1
    torch.testing.assert_close(encode_frames(tiny.vae, frames), clip_latents, rtol=0, atol=0)  # posterior mode
    assert encode_frames(tiny.vae, frames[:1]).shape == (1, 1, 4, 8, 12)  # a single frame is one latent frame
    with pytest.raises(ValueError, match="8k\\+1"):
        encode_frames(tiny.vae, frames[:8])


def test_inversion_step_formula(tiny, clip_latents, prompt_embeds):
    # One step from the clean latent (ᾱ = 1) to t = 99: x0 = z and ε = v, so z' = √ᾱ z + √(1-ᾱ) v(z, 99).
    noisy, t = invert_ddim(predictor(tiny, prompt_embeds), tiny.scheduler, clip_latents, num_steps=10,
                           readout_index=9)
    assert t == 99
    with torch.no_grad():
        v = predict_velocity(tiny.transformer, clip_latents, 99, prompt_embeds)
    alpha = float(tiny.scheduler.alphas_cumprod[99])
    torch.testing.assert_close(noisy, alpha ** 0.5 * clip_latents + (1 - alpha) ** 0.5 * v)


def test_inversion_reports_progress(tiny, clip_latents, prompt_embeds):
    calls = []
    noisy, t = invert_ddim(predictor(tiny, prompt_embeds), tiny.scheduler, clip_latents, num_steps=10,
                           readout_index=6, on_step=lambda i, n: calls.append((i, n)))
    assert t == 399 and noisy.shape == clip_latents.shape and noisy.dtype == torch.float32
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # t = 99, 199, 299, 399


def _reconstruct(transformer, scheduler, latents, prompt_embeds, t_start, num_steps):
    """Plain DDIM sampling with the scheduler's own step, from ``t_start`` down to the clean latent."""
    scheduler.set_timesteps(num_steps)
    with torch.no_grad():
        for t in scheduler.timesteps.tolist():
            if t <= t_start:
                v = predict_velocity(transformer, latents, t, prompt_embeds)
                latents = scheduler.step(v, t, latents).prev_sample
    return latents


def test_inversion_then_reconstruction_error_falls_with_steps(tiny, clip_latents, prompt_embeds):
    errors = []
    for num_steps in (10, 40):
        readout_index = num_steps // 5  # t = 799 for both grids
        noisy, t = invert_ddim(predictor(tiny, prompt_embeds), tiny.scheduler, clip_latents,
                               num_steps=num_steps, readout_index=readout_index)
        assert t == 799
        rebuilt = _reconstruct(tiny.transformer, tiny.scheduler, noisy, prompt_embeds, t, num_steps)
        errors.append(float((rebuilt - clip_latents).norm() / clip_latents.norm()))
    # method.md §4.2: roughly ∝ 1/N (0.41 at 10 steps, 0.11 at 50 on a random tiny model).
    assert errors[0] < 1.0 and errors[1] < errors[0] / 2


def test_inversion_in_bfloat16_keeps_float32_latents(tiny_model_dir, clip_latents):
    model = load_model(str(tiny_model_dir), dtype="bfloat16")
    prompt_embeds = model.encode_text("A video of a dog.", ["dog"]).prompt_embeds
    noisy, t = invert_ddim(predictor(model, prompt_embeds), model.scheduler, clip_latents, num_steps=10,
                            readout_index=6)
    assert noisy.dtype == torch.float32 and torch.isfinite(noisy).all() and t == 399


def test_inversion_with_rope(tiny_rope_model_dir):
    model = load_model(str(tiny_rope_model_dir))
    prompt_embeds = model.encode_text("A video of a dog.", ["dog"]).prompt_embeds
    frames = torch.rand(9, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1
    latents = encode_frames(model.vae, frames)
    noisy, t = invert_ddim(predictor(model, prompt_embeds), model.scheduler, latents, num_steps=10,
                            readout_index=6)
    assert t == 399 and noisy.shape == latents.shape and torch.isfinite(noisy).all()


def test_renoise(tiny, clip_latents):
    noisy, t = renoise_ddim(tiny.scheduler, clip_latents, num_steps=50, readout_index=30, seed=42)
    assert t == 399
    again, _ = renoise_ddim(tiny.scheduler, clip_latents, num_steps=50, readout_index=30, seed=42)
    other, _ = renoise_ddim(tiny.scheduler, clip_latents, num_steps=50, readout_index=30, seed=7)
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    assert not torch.allclose(noisy, other)
    eps = torch.randn(clip_latents.shape, generator=torch.Generator().manual_seed(42))
    alpha = float(tiny.scheduler.alphas_cumprod[399])
    torch.testing.assert_close(noisy, alpha ** 0.5 * clip_latents + (1 - alpha) ** 0.5 * eps)
