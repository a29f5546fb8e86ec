"""Clean video latents (VAE) and how they reach the read-out point: DDIM inversion or the official renoise for
CogVideoX (v-prediction), flow-ODE inversion or the official renoise for Wan2.1 (flow matching)."""

from vidseg.inversion.ddim import invert_video, readout_timestep, renoise_video, timestep_grid
from vidseg.inversion.flow import flow_grid, invert_flow, renoise_flow
from vidseg.inversion.latents import encode_frames

__all__ = ["encode_frames", "flow_grid", "invert_flow", "invert_video", "readout_timestep", "renoise_flow",
           "renoise_video", "timestep_grid"]
