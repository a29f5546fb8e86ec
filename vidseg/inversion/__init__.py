"""How clean latents reach the read-out point, for any backbone: DDIM inversion or the official renoise for
v-prediction models, flow-ODE inversion or the official renoise for flow-matching models. The inverters take the
backbone's prediction as a callable, so they never see a model."""

from vidseg.inversion.ddim import Predict, invert_ddim, readout_timestep, renoise_ddim, timestep_grid
from vidseg.inversion.flow import flow_grid, invert_flow, renoise_flow

__all__ = ["Predict", "flow_grid", "invert_ddim", "invert_flow", "readout_timestep", "renoise_ddim",
           "renoise_flow", "timestep_grid"]
