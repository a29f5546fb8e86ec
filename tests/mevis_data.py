"""A tiny MeViS-shaped benchmark for the MeViS tests: three entries in two JSON shards (one a plain list, one a
dict holding the list) and 49-frame 64 x 96 videos, a fake ``localize_clip`` that writes deterministic maps, and a
judge batch output file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import moving_square_frames, write_video
from vidseg.datasets.mevis import MevisClip, write_official_maps

MAP_H, MAP_W = 6, 8  # latent map size of the fake maps
FRAME_H, FRAME_W = 64, 96

ENTRIES_A = [
    {"video_path": "datasets/MeViS/Videos_49/vidA_1.mp4", "caption": "a dog walks over the grass, then stands",
     "concepts": ["dog", "grass"], "object": ["walking", "standing"], "motion_idx": -2, "camera": "static"},
    {"video_path": "datasets/MeViS/Videos_49/vidA_2.mp4", "caption": "a person kicks a ball",
     "concepts": ["person", "ball", "person"], "object": ["kicking"], "motion_idx": -1, "camera": "static"},
]
ENTRIES_B = {"data": [
    {"video_path": "datasets/MeViS/Videos_49/vidB_1.mp4", "caption": "a car drives and turns left",
     "concepts": ["car"], "object": ["driving", "turning"], "camera": "static"},
]}
NAMES = ["vidA_1", "vidA_2", "vidB_1"]


def make_mevis(root: Path) -> tuple[Path, Path]:
    """``root/json/{shard_00,shard_01}.json`` and ``root/videos/<name>.mp4``; returns (json dir, video dir)."""
    json_dir, video_dir = root / "json", root / "videos"
    json_dir.mkdir(parents=True)
    (json_dir / "shard_00.json").write_text(json.dumps(ENTRIES_A))
    (json_dir / "shard_01.json").write_text(json.dumps(ENTRIES_B))
    for seed, name in enumerate(NAMES):
        write_video(video_dir / f"{name}.mp4", moving_square_frames(49, FRAME_H, FRAME_W, seed=seed))
    return json_dir, video_dir


def fake_maps(clip: MevisClip, kind: str = "imap") -> np.ndarray:
    """float32 [C, 13, 6, 8]: concept c of latent frame f is a bump at column (c + f) % 8 and row c % 6, scaled by
    the clip's name length and 1 + (kind == gramcol), so every row, frame, clip and kind differs."""
    count = len(clip.all_concepts)
    maps = np.zeros((count, 13, MAP_H, MAP_W), np.float32)
    yy, xx = np.mgrid[:MAP_H, :MAP_W]
    for c in range(count):
        for f in range(13):
            maps[c, f] = np.exp(-((xx - (c + f) % MAP_W) ** 2 + (yy - c % MAP_H) ** 2) / 2.0)
    return maps * len(clip.name) * (2.0 if kind == "gramcol" else 1.0)


class FakeLocalizer:
    """``localize_clip``: writes both official IMAP files and ``labels.txt``; raises ``fail[name]`` if given."""

    def __init__(self, fail: dict[str, BaseException] | None = None, shape_override: tuple | None = None):
        self.calls: list[str] = []
        self.fail = fail or {}
        self.shape_override = shape_override

    def __call__(self, clip: MevisClip, folder: Path) -> None:
        self.calls.append(clip.name)
        if clip.name in self.fail:
            raise self.fail[clip.name]
        maps = {"imap": fake_maps(clip), "gramcol": fake_maps(clip, "gramcol")}
        if self.shape_override is not None:
            maps["imap"] = np.zeros(self.shape_override, np.float32)
        write_official_maps(folder, maps)
        (folder / "labels.txt").write_text("\n".join(clip.all_concepts))


def judge_output_line(custom_id: str, content: str | None = None, status: int = 200, error=None) -> str:
    """One line of an OpenAI batch output file (chat completions); no content = an empty body."""
    body = {"choices": [{"message": {"role": "assistant", "content": content}}]} if content is not None else {}
    return json.dumps({"id": f"batch_req_{custom_id}", "custom_id": custom_id,
                       "response": {"status_code": status, "request_id": "r", "body": body}, "error": error})


def write_judge_results(path: Path) -> Path:
    """Two methods: sel_imap_layers has 3 answered requests and 1 error; imap_layers 1 unparseable answer, 1
    partial (SL 5, TL out of range), 1 non-200. Means: SL 3, TL 4, PR 4, SS 3, OBJ 4; and SL 5 alone."""
    line = judge_output_line
    path.write_text("\n".join([
        line("vidA_1::sel_imap_layers", "<SL>4</SL><TL>3</TL><PR>5</PR><SS>2</SS><OBJ>4</OBJ>"),
        line("vidA_2::sel_imap_layers", '<score name="SL">2</score><score name="TL">5</score>'
                                        '<score name="PR">4</score><score name="SS">3</score>'
                                        '<score name="OBJ">5</score>'),
        line("vidB_1::sel_imap_layers", "<spatial_localization>3</spatial_localization><TL>4</TL><PR>3</PR>"
                                        "<sparseness>4</sparseness><object_shape>3</object_shape>"),
        line("vidC_1::sel_imap_layers", error={"code": "server_error", "message": "boom"}),
        line("vidA_1::imap_layers", "I am unable to score these images."),
        line("vidA_2::imap_layers", "<SL>5</SL><TL>7</TL>"),
        line("vidB_1::imap_layers", "<SL>1</SL>", status=429),
        "",
    ]) + "\n")
    return path
