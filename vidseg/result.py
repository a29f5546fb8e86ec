"""``SaliencyResult``: what the model pass produces for one video, held in memory, saved to and loaded from
``saliency.npz``. Everything after it (probabilities, upsampling, CRF, export) is cheap and model-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from vidseg.errors import ConfigError
from vidseg.saliency_file import read_null_maps, read_saliency_npz, write_saliency_npz
from vidseg.video.read import VideoInfo, VideoReader
from vidseg.video.sample import SamplingPlan

if TYPE_CHECKING:
    from vidseg.config import VidsegConfig


@dataclass
class SaliencyResult:
    """The class saliency of one video.

    Attributes:
        source: the video (file or frame folder) the maps were computed from.
        classes: the class names, in label order (label i + 1 is ``classes[i]``).
        prompt: the caption the model saw.
        info: the video's frame count, rate, size and frame names.
        plan: which frames the model saw and how windows cover them.
        window_maps: window i's map ``[C, F_lat, h, w]`` (float32, z-scored units).
        sampled: the blended saliency per sampled frame ``[C, S, h, w]``.
        valid_box: ``(top, left, bottom, right)`` of the video inside the model frame (``resize: pad``).
        timestep: the read-out timestep (CogVideoX: the integer t; Wan: sigma * 1000).
        seconds: time spent per stage of the model pass.
        kind: the map kind of ``window_maps`` (``maps.kind``).
        window_maps_by_kind: every map kind read in the pass (``kind`` included), window by window; in memory only
            (``saliency.npz`` keeps ``window_maps``).
        window_null_maps: window i's map of the null concept ``[F_lat, h, w]`` (a text slot holding no word, read
            like the classes), what ``vidseg.presence`` compares each class with; empty for an older
            ``saliency.npz`` without it (every class is then taken as present).
    """

    source: Path
    classes: list[str]
    prompt: str
    info: VideoInfo
    plan: SamplingPlan
    window_maps: list[torch.Tensor]
    sampled: torch.Tensor
    valid_box: tuple[int, int, int, int]
    timestep: float
    seconds: dict[str, float] = field(default_factory=dict)
    kind: str = ""
    window_maps_by_kind: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    window_null_maps: list[torch.Tensor] = field(default_factory=list)

    def open_video(self, config: VidsegConfig) -> VideoReader:
        """The frames these maps were made from (the same time range of ``source``), read as ``config`` says."""
        from vidseg.video.read import open_video

        return open_video(self.source, reader=config.video.reader, frame_folder_fps=config.video.frame_folder_fps,
                          start=self.info.start, end=self.info.end)

    def at_frames(self, frame_indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Saliency of original frames ``frame_indices`` [T], interpolated linearly between the nearest sampled
        frames: float32 ``[T, C, h, w]``."""
        from vidseg.video.sample import frame_interpolation

        frame_indices = np.asarray(frame_indices, dtype=np.int64)
        left, right, alpha = frame_interpolation(self.plan, self.info.num_frames)
        left, right = torch.as_tensor(left[frame_indices]), torch.as_tensor(right[frame_indices])
        a = torch.as_tensor(alpha[frame_indices], dtype=torch.float32)[:, None, None, None]
        s = self.sampled.float()  # [C, S, h, w]
        return (1 - a) * s[:, left].permute(1, 0, 2, 3) + a * s[:, right].permute(1, 0, 2, 3)

    def save(self, path: str | Path) -> Path:
        """Write ``saliency.npz`` (atomically): the window maps in float16 ``[C, windows * F_lat, h, w]``, the null
        concept's ``[windows * F_lat, h, w]`` and the sampling metadata ``load`` needs."""
        maps = torch.cat(self.window_maps, dim=1).to(torch.float16).numpy()
        null = torch.cat(self.window_null_maps).numpy() if self.window_null_maps else None
        metadata = {
            "classes": self.classes,
            "prompt": self.prompt,
            "timestep": self.timestep,
            "latent_frames_per_window": int(self.window_maps[0].shape[1]),
            "window_sampled_frames": [w.tolist() for w in self.plan.windows],
            "window_weights": [w.tolist() for w in self.plan.window_weights],
            "sampled_frames": self.plan.sampled_frames.tolist(),
            "num_frames": self.info.num_frames,
            "fps": self.info.fps,
            "video_size": [self.info.height, self.info.width],
            "valid_box": list(self.valid_box),
            "start": self.info.start,  # the time range of the source (None: its start / end)
            "end": self.info.end,
        }
        return write_saliency_npz(path, maps, metadata, null=null)

    @classmethod
    def load(cls, path: str | Path, video: str | Path, *, reader: str = "auto",
             frame_folder_fps: float = 15.0) -> "SaliencyResult":
        """Rebuild a result from a ``saliency.npz`` and the video it was made from, so labels can be made again
        (other thresholds, upsampler or CRF) without the model."""
        from vidseg.video.read import open_video
        from vidseg.video.sample import blend_windows

        maps, meta = read_saliency_npz(path)
        null = read_null_maps(path)
        with open_video(video, reader=reader, frame_folder_fps=frame_folder_fps, start=meta.get("start"),
                        end=meta.get("end")) as opened:
            info = opened.info
        if info.num_frames != meta["num_frames"]:
            raise ConfigError(f"{video} has {info.num_frames} frames but {path} was made from {meta['num_frames']}; "
                              "pass the video the saliency was computed from")
        per_window = int(meta["latent_frames_per_window"])
        window_maps = list(torch.from_numpy(maps.astype(np.float32)).split(per_window, dim=1))
        null_maps = [] if null is None else list(torch.from_numpy(null.astype(np.float32)).split(per_window))
        plan = SamplingPlan(
            num_frames=info.num_frames,
            sampled_frames=np.asarray(meta["sampled_frames"], dtype=np.int64),
            windows=[np.asarray(w, dtype=np.int64) for w in meta["window_sampled_frames"]],
            window_weights=[np.asarray(w, dtype=np.float32) for w in meta["window_weights"]],
        )
        return cls(
            source=Path(video), classes=list(meta["classes"]), prompt=meta["prompt"], info=info, plan=plan,
            window_maps=window_maps, sampled=blend_windows(plan, window_maps), valid_box=tuple(meta["valid_box"]),
            timestep=meta["timestep"], window_null_maps=null_maps,
        )
