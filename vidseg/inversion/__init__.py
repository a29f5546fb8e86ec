"""Clean video latents (VAE) and how they reach the read-out timestep (DDIM inversion or official renoise)."""

from vidseg.inversion.ddim import invert_video, readout_timestep, renoise_video, timestep_grid
from vidseg.inversion.latents import encode_frames

__all__ = ["encode_frames", "invert_video", "readout_timestep", "renoise_video", "timestep_grid"]
