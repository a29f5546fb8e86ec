"""Bring a clean latent to the read-out point of a flow-matching model (e.g. Wan2.1): flow-ODE inversion (vidseg's
default) or the official single noising. See method.md §19.3.

The grid is the scheduler's own (``set_timesteps(num_steps)``: σ from 1 down to 0 with the checkpoint's shift,
timesteps σ * 1000); the read-out point is ``sigmas[readout_index]`` (index 20 of 50 with shift 3: σ = 0.818).
x_σ = (1 - σ) x0 + σ ε, and the model predicts the flow v = ε - x0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vidseg.inversion.ddim import Predict


def flow_grid(scheduler: Any, num_steps: int, readout_index: int) -> tuple[list[float], list[float]]:
    """``(sigmas, timesteps)`` of the descending grid, ``num_steps + 1`` sigmas ending at 0 (sets the grid)."""
    if not 0 <= readout_index < num_steps:
        raise ValueError(f"readout_index must be in [0, {num_steps}), got {readout_index}")
    scheduler.set_timesteps(num_steps)
    sigmas = [float(s) for s in scheduler.sigmas]
    timesteps = [float(t) for t in scheduler.timesteps] + [0.0]
    return sigmas, timesteps


@torch.no_grad()
def invert_flow(
    predict: Predict,
    scheduler: Any,
    latents: torch.Tensor,
    *,
    num_steps: int = 50,
    readout_index: int = 20,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """Integrate the flow ODE backwards (Euler, conditional only, no guidance) from the clean latent (σ = 0) up the
    grid to ``sigmas[readout_index]``: ``x_{σ'} = x_σ + (σ' - σ) v(x_σ, σ)`` with the model evaluated at the
    current, lower σ. ``num_steps - readout_index`` model evaluations (30 for the defaults).

    Args:
        predict: the flow prediction at a timestep σ * 1000 (``Backbone.predict`` with the caption bound).
        latents: clean latents in the transformer's layout on the execution device.
        on_step: called as ``on_step(i, n)`` after step ``i`` of ``n`` (1-based).

    Returns:
        ``(noisy_latents, timestep)``: float32 latents at the read-out point and its timestep (σ * 1000).
    """
    sigmas, timesteps = flow_grid(scheduler, num_steps, readout_index)
    z = latents.float()  # the accumulation stays in float32 whatever the model dtype
    path = list(range(num_steps, readout_index, -1))  # grid indices: num_steps (σ = 0) ... readout_index + 1
    for n, i in enumerate(path):
        v = predict(z, timesteps[i]).float()
        z = z + (sigmas[i - 1] - sigmas[i]) * v
        if on_step is not None:
            on_step(n + 1, len(path))
    return z, timesteps[readout_index]


def renoise_flow(
    scheduler: Any,
    latents: torch.Tensor,
    *,
    num_steps: int = 50,
    readout_index: int = 20,
    seed: int = 42,
) -> tuple[torch.Tensor, float]:
    """The official mode: noise clean latents once, x = (1 - σ) x0 + σ ε at ``sigmas[readout_index]``; ε from a
    CPU generator seeded with ``seed`` (float32), so the result is the same on every device."""
    sigmas, timesteps = flow_grid(scheduler, num_steps, readout_index)
    sigma = sigmas[readout_index]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    return (1 - sigma) * latents.float() + sigma * noise, timesteps[readout_index]
