"""Bring a clean video latent to the read-out timestep: DDIM inversion (vidseg default) or one seeded noising
(the official IMAP "renoise" mode). See method.md §4.

Timesteps come from the scheduler's own grid (``set_timesteps(num_steps)``, "trailing" spacing for CogVideoX:
999, 979, ..., 19 for 50 steps); the read-out timestep is ``grid[readout_index]`` (399 for index 30 of 50).
ᾱ always comes from ``scheduler.alphas_cumprod``, which is already SNR-shifted and zero-terminal-SNR rescaled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# ``predict(latents, timestep)``: the model's prediction (v for DDIM, the flow for the flow ODE) for float32
# latents; the backbone casts them to its own dtype (``Backbone.predict``).
Predict = Callable[[torch.Tensor, Any], torch.Tensor]


def timestep_grid(scheduler: Any, num_steps: int) -> list[int]:
    """The scheduler's descending inference timesteps for ``num_steps`` steps (sets them on the scheduler)."""
    scheduler.set_timesteps(num_steps)
    return [int(t) for t in scheduler.timesteps]


def readout_timestep(scheduler: Any, num_steps: int, readout_index: int) -> int:
    """Timestep at ``readout_index`` of the descending ``num_steps`` grid (CogVideoX: index 30 of 50 -> 399)."""
    if not 0 <= readout_index < num_steps:
        raise ValueError(f"readout_index must be in [0, {num_steps}), got {readout_index}")
    return timestep_grid(scheduler, num_steps)[readout_index]


@torch.no_grad()
def invert_ddim(
    predict: Predict,
    scheduler: Any,
    latents: torch.Tensor,
    *,
    num_steps: int = 50,
    readout_index: int = 30,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """DDIM-invert clean latents up the timestep grid to the read-out timestep (v-prediction, no CFG).

    Walks ``grid[num_steps - 1], ..., grid[readout_index]`` upward (t = 19, 39, ..., 399: 20 model evaluations for
    the defaults), starting from the clean latent (ᾱ = 1). One step from ᾱ_a to the noisier ᾱ_b, with the model
    evaluated at the target timestep t_b, v = v_θ(z, t_b):

        x0 = √ᾱ_a z − √(1 − ᾱ_a) v,   ε = √ᾱ_a v + √(1 − ᾱ_a) z,   z ← √ᾱ_b x0 + √(1 − ᾱ_b) ε

    Args:
        predict: the v-prediction at an integer timestep (``Backbone.predict`` with the caption bound).
        scheduler: the model's scheduler (its ``alphas_cumprod`` and timestep grid are used).
        latents: clean latents in the transformer's layout on the execution device.
        on_step: called as ``on_step(i, n)`` after step ``i`` of ``n`` (1-based), e.g. for a progress bar.

    Returns:
        ``(noisy_latents, timestep)``: float32 latents at the read-out timestep, same shape as ``latents``.
    """
    t_readout = readout_timestep(scheduler, num_steps, readout_index)  # also sets the grid on the scheduler
    path = [int(t) for t in scheduler.timesteps[readout_index:].flip(0)]  # ascending: 19, 39, ..., 399
    alphas = scheduler.alphas_cumprod.to(torch.float64)
    z = latents.float()  # the accumulation stays in float32 whatever the model dtype
    alpha_prev = 1.0
    for i, t in enumerate(path):
        v = predict(z, t).float()
        alpha_t = float(alphas[t])
        x0 = alpha_prev ** 0.5 * z - (1 - alpha_prev) ** 0.5 * v
        eps = alpha_prev ** 0.5 * v + (1 - alpha_prev) ** 0.5 * z
        z = alpha_t ** 0.5 * x0 + (1 - alpha_t) ** 0.5 * eps
        alpha_prev = alpha_t
        if on_step is not None:
            on_step(i + 1, len(path))
    return z, t_readout


def renoise_ddim(
    scheduler: Any,
    latents: torch.Tensor,
    *,
    num_steps: int = 50,
    readout_index: int = 30,
    seed: int = 42,
) -> tuple[torch.Tensor, int]:
    """The official IMAP mode: noise clean latents once to the read-out timestep, x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε.

    ε is drawn in float32 from a CPU generator seeded with ``seed``, so the result is the same on every device.
    (The official code draws ε from a CUDA generator inside its pipeline, so bit parity with its maps is not
    attempted.)

    Returns:
        ``(noisy_latents, timestep)``: float32 latents, same shape and device as ``latents``.
    """
    t_readout = readout_timestep(scheduler, num_steps, readout_index)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    timesteps = torch.tensor([t_readout], dtype=torch.long, device=latents.device)
    return scheduler.add_noise(latents.float(), noise, timesteps), t_readout
