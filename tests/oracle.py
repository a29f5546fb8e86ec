"""A plumbing oracle: a backbone whose map read-out is right by construction, for toy-world clips.

It implements the backbone contract (``vidseg.models.base.Backbone``) and stands where a model stands in
``VideoSegmenter``, so everything around the model -- sampling, windows and blending, resize
/ pad and crop, latent-frame <-> frame mapping, calibration, upsampling, CRF, export -- runs on meaningful maps.

Its maps come from the truth, not from vidseg's code paths: each class's object has a known uniform colour, so the
oracle finds the object's pixels in the frames it is handed (the model input, after vidseg resized or padded it),
pools them onto the toy model's token grid for that input (8 x 8 pixels per token: VAE / 4, then 2 x 2
patches), and averages the frames of each
latent frame as the causal VAE groups them (frame 0 alone, then 4k-3 .. 4k). A map is 4 x the share of a token
that the object covers (0 for a class without a colour, i.e. absent). ``plant`` deliberately breaks it, to show
that the tests built on it catch such bugs.

Verbs (the motion toy world) are found the same way: the pixels of each object given for the verb, in the frames
where its mask differs from the previous frame's (it moved or turned; frame 0 of a window takes frame 1's answer).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from vidseg.models.base import Backbone, TextEmbeddings

COLOUR_TOLERANCE = 40  # max per-channel difference (RGB levels) from the object's colour; noise sigma is 6
TOKEN_PIXELS = 8  # the toy model's grid (configs/toy.yaml); CogVideoX's is 16
PLANTS = (None, "flip", "shift", "latent-shift", "reverse")
MOVED_SHARE = 0.05  # an object performs in a frame whose mask differs from the previous one by this share of its area


class OracleBackbone(Backbone):
    """Backbone stand-in for toy clips.

    Args:
        colours: class name -> RGB of its object in the clip; classes not in it are absent (map 0).
        verbs: verb -> the RGB of each object that performs it.
        plant: ``"flip"`` mirrors the maps left-right, ``"shift"`` reads each latent frame one video frame late,
            ``"latent-shift"`` gives each latent frame the next one's map, ``"reverse"`` reverses the latent frames
            of every window; None is the correct oracle.
        null_noise: the scale of a smooth random field (seeded; mean 1, sd 1) that the null concept reads, and every class
            under its own map: an absent class then reads exactly what the null concept reads, as a model's does at
            best, and calibrations that rescale each class (``class``) lift it to a present class's level.
    """

    source = "oracle"
    display_name = "oracle"
    captures = frozenset({"video_outputs", "video_queries", "concept_keys"})
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, colours: dict[str, tuple[int, int, int]], plant: str | None = None,
                 verbs: dict[str, list[tuple[int, int, int]]] | None = None, null_noise: float = 0.0):
        if plant not in PLANTS:
            raise ValueError(f"plant must be one of {PLANTS}")
        self.colours = colours
        self.verbs = verbs or {}
        self.plant = plant
        self.null_noise = null_noise
        self.names: list[str] = []  # concept embeddings carry an index into this list

    @classmethod
    def preset_for(cls, transformer_config: Any) -> str:
        return "toy"

    def encode_text(self, prompt: str, classes: Sequence[str]) -> TextEmbeddings:
        codes = []
        for name in classes:
            if name not in self.names:
                self.names.append(name)
            codes.append(self.names.index(name))
        return TextEmbeddings(torch.zeros(1, 1, 1), torch.tensor(codes, dtype=torch.float32)[:, None])

    def release_text_encoder(self) -> None:
        pass

    def check_settings(self, config: Any, classes: Sequence[str] | None = None) -> None:
        pass

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels[None].float()  # the "latents" are the model-input frames themselves [1, T, 3, H, W]

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        return 1, num_frames, 3, height, width

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        T, H, W = latents.shape[1], latents.shape[3], latents.shape[4]
        return (T - 1) // 4 + 1, H // TOKEN_PIXELS, W // TOKEN_PIXELS

    def predict(self, latents: torch.Tensor, timestep: float, text: TextEmbeddings) -> torch.Tensor:
        return torch.zeros_like(latents)

    def readout_timestep(self, inversion: Any) -> int:
        return 399

    def noise_to_readout(self, latents: torch.Tensor, text: TextEmbeddings, inversion: Any, *,
                         on_step: Any = None) -> tuple[torch.Tensor, int]:
        steps = self.inversion_steps(inversion) or 0
        for i in range(steps):
            if on_step is not None:
                on_step(i, steps)
        return latents, self.readout_timestep(inversion)

    def read_maps(self, noisy: torch.Tensor, timestep: int, text: TextEmbeddings, maps: Any,
                  kinds: Sequence[str]) -> dict[str, torch.Tensor]:
        concept_embeds = text.concepts
        rgb = ((noisy[0].permute(0, 2, 3, 1).numpy() + 1) * 127.5)  # [T, H, W, 3]
        T, H, W, _ = rgb.shape
        h, w = H // TOKEN_PIXELS, W // TOKEN_PIXELS
        groups = [[0]] + [list(range(4 * k - 3, 4 * k + 1)) for k in range(1, (T - 1) // 4 + 1)]
        if self.plant == "shift":
            groups = [[min(i + 1, T - 1) for i in g] for g in groups]
        out = np.zeros((len(concept_embeds), len(groups), h, w), dtype=np.float32)
        def colour_mask(colour: tuple[int, int, int]) -> np.ndarray:  # [T, H, W]
            return np.abs(rgb - np.asarray(colour, dtype=np.float32)).max(axis=-1) < COLOUR_TOLERANCE

        for c, code in enumerate(concept_embeds[:, 0].long().tolist()):
            name = self.names[code]
            if name in self.verbs:
                mask = np.zeros((T, H, W), dtype=bool)
                for colour in self.verbs[name]:
                    mask |= performing(colour_mask(colour))
            elif name in self.colours:
                mask = colour_mask(self.colours[name])
            else:
                continue
            cells = mask.reshape(T, h, TOKEN_PIXELS, w, TOKEN_PIXELS).mean(axis=(2, 4))  # [T, h, w]
            out[c] = 4.0 * np.stack([cells[g].mean(axis=0) for g in groups])
        maps_out = torch.from_numpy(out)
        if self.plant == "flip":
            maps_out = maps_out.flip(-1)
        elif self.plant == "latent-shift":
            maps_out = torch.cat([maps_out[:, 1:], maps_out[:, -1:]], dim=1)
        elif self.plant == "reverse":
            maps_out = maps_out.flip(1)
        # The null concept (a slot holding no word) covers nothing, like an absent class.
        maps_out = torch.cat([maps_out, maps_out.new_zeros(1, *maps_out.shape[1:])])
        if self.null_noise:
            field = np.random.default_rng(0).standard_normal((len(groups), h + 2, w + 2))
            field = 1 + sum(field[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 3  # mean 1, sd 1
            maps_out = maps_out + self.null_noise * torch.from_numpy(field.astype(np.float32))[None]
        return {kind: maps_out for kind in kinds}


def performing(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``[T, H, W]`` (one object) kept in the frames where it differs from the previous frame's by more
    than ``MOVED_SHARE`` of the object's area; frame 0 takes frame 1's answer."""
    area = max(float(mask.sum(axis=(1, 2)).max()), 1.0)
    changed = (mask[1:] != mask[:-1]).sum(axis=(1, 2)) > MOVED_SHARE * area
    moving = np.concatenate([changed[:1], changed]) if len(changed) else np.zeros(1, dtype=bool)
    return mask & moving[:, None, None]
