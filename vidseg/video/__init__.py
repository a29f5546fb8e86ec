"""Video input: reading frames (decord / PyAV / frame folders) and sampling them into model windows."""

from vidseg.video.read import VideoInfo, VideoReader, open_video
from vidseg.video.sample import (
    SamplingPlan,
    blend_windows,
    crop_to_valid,
    fit_frames,
    frame_interpolation,
    latent_index,
    plan_sampling,
)

__all__ = [
    "SamplingPlan", "VideoInfo", "VideoReader", "blend_windows", "crop_to_valid", "fit_frames",
    "frame_interpolation", "latent_index", "open_video", "plan_sampling",
]
