"""The MeViS batch run (method.md §14): every clip's official map files and, on request, the LLM judge's inputs,
resumable and shardable like ``vidseg label``.

Each clip goes through ``vidseg.runners.resumable.label_dataset``, so the rules are those of ``vidseg label``: a clip
is written into an empty temporary folder, checked, marked complete and renamed onto ``OUT/<clip name>/``; a
complete folder is skipped by the next run; a failing clip is recorded and the run goes on; Ctrl-C keeps every
finished clip; ``shard=(i, n)`` takes every n-th clip in name order, starting at i. Per clip::

    OUT/<clip>/npy/<key>.npy        float32 [C, 13, h, w], C = len(clip.all_concepts), for every key in ``keys``
    OUT/<clip>/...                  whatever else ``localize_clip`` writes (vidseg's own localize outputs)
    OUT/<clip>/raw_grid.jpg         with ``judge``: the three 4 x 3 grids of vidseg.evaluation.judge,
    OUT/<clip>/overlay_grid.jpg       from the clip's frames and the judged concept's map ``npy/<judge.key>.npy``
    OUT/<clip>/heatmap_grid.jpg
    OUT/<clip>/judge.json           with ``judge``: the custom_id, judged concept and grid settings
    OUT/mevis_log.json              the run log (``mevis_log.shard-i-of-n.json`` with n > 1)
    OUT/judge_requests.jsonl        with ``judge``: one Batch API request per complete clip of the shard
                                    (``judge_requests.shard-i-of-n.jsonl`` with n > 1, so shards never race)

The request file is rebuilt at the end of every run from the complete clip folders, so a resumed or repeated run
never duplicates a clip's request (one folder, one line). Changing the judged map key, concept rule or tile size
redoes the clips whose grids were made otherwise. Turning the judge on over clips made without it redoes them (the
grids are part of the clip's atomic folder).

The contract of ``localize_clip(clip, folder)``: ``folder`` is an empty folder that becomes ``OUT/<clip.name>``; the
callback writes into it at least ``npy/<key>.npy`` for every key in ``keys`` (``write_official_maps`` does it from
map kinds), rows in ``clip.all_concepts`` order, 13 latent frames; it raises to fail the clip (a ``VidsegError``
gives a one-line reason, anything else also keeps its traceback in the log) and lets ``KeyboardInterrupt``
propagate. It must not write ``raw_grid.jpg`` / ``overlay_grid.jpg`` / ``heatmap_grid.jpg`` / ``judge.json``
(the runner's, when judging) nor the completion marker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vidseg.datasets.mevis import MevisClip, judged_concept
from vidseg.errors import ConfigError, DatasetError, OutputError, VideoReadError
from vidseg.evaluation.judge import (
    GRID_FRAMES, GRID_NAMES, LATENT_FRAMES, NUM_CLIP_FRAMES, NUM_LATENT_FRAMES, judge_request, sampled_grids,
    write_judge_grids, write_judge_requests,
)
from vidseg.files import write_json_atomic
from vidseg.runners.resumable import MARKER_NAME, LabelEvent, LabelSummary, is_complete, label_dataset, shard_videos

JUDGE_INFO = "judge.json"
DEFAULT_KEY = "sel_imap_layers"


@dataclass(frozen=True)
class JudgeOptions:
    """What the LLM judge is asked about each clip.

    Attributes:
        system_prompt: the judge's instructions (``vidseg.evaluation.judge.read_judge_prompt``).
        key: the official map file the grids show (default ``sel_imap_layers``, IMAP).
        concept: which concept's map: ``"motion_idx"`` (the entry's negative ``motion_idx`` into concepts + verbs,
            a hypothesis of §14; else the last verb), ``"last_verb"``, or a function clip -> row of
            ``clip.all_concepts`` (``vidseg.datasets.mevis.judged_concept``).
        model, temperature, api: passed to ``judge_request``.
        tile_size: ``(height, width)`` of each grid tile; None keeps the clip's frame size. Each grid is
            ``[3 * height, 4 * width]``; smaller tiles keep the request file small (the Batch API caps input files).
    """

    system_prompt: str
    key: str = DEFAULT_KEY
    concept: str | Callable[[MevisClip], int] = "motion_idx"
    model: str = "o3-pro"
    temperature: float | None = 0
    api: str = "chat"
    tile_size: tuple[int, int] | None = None

    def concept_index(self, clip: MevisClip) -> int:
        index = judged_concept(clip, self.concept) if isinstance(self.concept, str) else self.concept(clip)
        if not 0 <= index < len(clip.all_concepts):
            raise ConfigError(f"{clip.name}: judged concept row {index} is outside its "
                              f"{len(clip.all_concepts)} concepts")
        return int(index)

    def grid_settings(self, clip: MevisClip) -> dict[str, Any]:
        """What the clip's grids depend on; a folder whose ``judge.json`` differs is redone."""
        return {"key": self.key, "concept_index": self.concept_index(clip),
                "tile_size": list(self.tile_size) if self.tile_size else None}


@dataclass
class MevisSummary(LabelSummary):
    """``LabelSummary`` of the run plus, with a judge, the request file written and its line count."""

    judge_requests: Path | None = None
    num_requests: int = 0

    def lines(self) -> list[str]:
        lines = super().lines()
        if self.judge_requests is not None:
            lines.insert(-1, f"judge requests: {self.num_requests} in {self.judge_requests}")
        return lines


def custom_id(clip: MevisClip, key: str) -> str:
    """``<clip name>::<map key>``: the request id, from which ``judge_scores`` reads the method."""
    return f"{clip.name}::{key}"


def shard_file_name(stem: str, shard: tuple[int, int], suffix: str) -> str:
    """``<stem><suffix>`` for one shard, ``<stem>.shard-i-of-n<suffix>`` with several (as ``vidseg label``)."""
    return f"{stem}{suffix}" if shard[1] == 1 else f"{stem}.shard-{shard[0]}-of-{shard[1]}{suffix}"


def expected_clip_files(keys: Sequence[str], judge: JudgeOptions | None) -> list[str]:
    """Files (relative to the clip folder) a complete clip holds."""
    names = [f"npy/{k}.npy" for k in dict.fromkeys([*keys, *([judge.key] if judge else [])])]
    if judge is not None:
        names += [f"{n}.jpg" for n in GRID_NAMES] + [JUDGE_INFO]
    return names


def run_mevis(
    clips: Sequence[MevisClip],
    out: str | Path,
    localize_clip: Callable[[MevisClip, Path], None],
    *,
    shard: tuple[int, int] = (0, 1),
    keys: Sequence[str] = (DEFAULT_KEY,),
    judge: JudgeOptions | None = None,
    fingerprint: str | None = None,
    log_path: str | Path | None = None,
    on_event: Callable[[LabelEvent], None] | None = None,
) -> MevisSummary:
    """Localise every clip of ``shard`` not complete in ``out`` (module docstring), then, with ``judge``, write the
    shard's judge requests.

    Args:
        clips: every clip of the benchmark (``mevis_clips``); the shard is taken here.
        localize_clip: writes one clip's outputs into the given empty folder (the contract in the module docstring).
        shard: (i, n): the clips whose position in name order is i modulo n.
        keys: the official map files every clip must hold (``npy/<key>.npy``, checked to be ``[C, 13, h, w]``).
        judge: also make the judge's grids and requests; None makes neither.
        fingerprint: identifies the model settings; a clip completed under another one is redone.
        log_path: JSON log; default ``OUT/mevis_log.json`` (``mevis_log.shard-i-of-n.json`` with n > 1).
        on_event: called before and after each clip (progress display), as in ``label_dataset``.
    """
    out = Path(out)
    names = [*keys, *([judge.key] if judge else [])]
    bad = [k for k in names if not k or not k.replace("_", "").isalnum()]
    if bad:
        raise ConfigError(f"map key {bad[0]!r} is not a file stem such as sel_imap_layers")
    expected = expected_clip_files(keys, judge)
    if judge is not None:
        # Grids made for another key / concept / tile size: drop the marker, so the clip is redone.
        for clip in shard_videos(clips, shard):
            folder = out / clip.name
            if is_complete(folder, expected, fingerprint) and not _grids_match(folder, clip, judge):
                (folder / MARKER_NAME).unlink(missing_ok=True)

    def one_clip(clip: MevisClip, folder: Path) -> None:
        if not clip.video.is_file():
            raise VideoReadError(f"video {clip.video.name} is not in {clip.video.parent}")
        localize_clip(clip, folder)
        maps = {key: _check_maps(folder, key, clip) for key in dict.fromkeys(names)}
        if judge is not None:
            _write_judge_inputs(clip, folder, maps[judge.key], judge)

    log_path = log_path if log_path is not None else out / shard_file_name("mevis_log", shard, ".json")
    # label_dataset reads only ``.name`` and ``.source`` of its items, which a MevisClip has.
    summary = label_dataset(clips, out, one_clip, shard=shard, log_path=log_path, on_event=on_event,
                            expected_files=lambda clip: expected, fingerprint=fingerprint)
    result = MevisSummary(**{f.name: getattr(summary, f.name) for f in fields(LabelSummary)})
    if judge is not None:
        result.judge_requests = out / shard_file_name("judge_requests", shard, ".jsonl")
        result.num_requests = collect_judge_requests(clips, out, judge, shard=shard, keys=keys,
                                                     fingerprint=fingerprint, path=result.judge_requests)
    return result


def collect_judge_requests(
    clips: Sequence[MevisClip],
    out: str | Path,
    judge: JudgeOptions,
    *,
    shard: tuple[int, int] = (0, 1),
    keys: Sequence[str] = (DEFAULT_KEY,),
    fingerprint: str | None = None,
    path: str | Path | None = None,
) -> int:
    """(Re)write the shard's request file from its complete clip folders, one line per clip, in name order; a
    clip not complete (failed, not run yet) has none. Returns the number of requests."""
    out = Path(out)
    path = Path(path) if path is not None else out / shard_file_name("judge_requests", shard, ".jsonl")
    expected = expected_clip_files(keys, judge)

    def requests():
        for clip in shard_videos(clips, shard):
            folder = out / clip.name
            if is_complete(folder, expected, fingerprint) and _grids_match(folder, clip, judge):
                images = {name: folder / f"{name}.jpg" for name in GRID_NAMES}
                yield judge_request(custom_id(clip, judge.key), clip.caption, images, judge.system_prompt,
                                    judge.model, temperature=judge.temperature, api=judge.api)

    return write_judge_requests(path, requests())


def _check_maps(folder: Path, key: str, clip: MevisClip) -> np.ndarray:
    """The clip's ``npy/<key>.npy`` (memory-mapped), checked to be the official float32 ``[C, 13, h, w]``."""
    path = folder / "npy" / f"{key}.npy"
    if not path.is_file():
        raise OutputError(f"localize_clip wrote no npy/{key}.npy")
    try:
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise OutputError(f"npy/{key}.npy is not a readable .npy file ({exc})") from None
    count = len(clip.all_concepts)
    if maps.dtype != np.float32 or maps.ndim != 4 or maps.shape[0] != count or maps.shape[1] != NUM_LATENT_FRAMES:
        raise OutputError(f"npy/{key}.npy is {maps.dtype} {tuple(maps.shape)}; expected float32 [{count}, "
                          f"{NUM_LATENT_FRAMES}, h, w] ({count} concepts, {NUM_LATENT_FRAMES} latent frames)")
    return maps


def _write_judge_inputs(clip: MevisClip, folder: Path, maps: np.ndarray, judge: JudgeOptions) -> None:
    """The three grids of the judged concept and ``judge.json``, into the clip's temporary folder."""
    from vidseg.video.read import open_video

    settings = judge.grid_settings(clip)
    with open_video(clip.video) as reader:
        if len(reader) != NUM_CLIP_FRAMES:
            raise DatasetError(f"video {clip.video.name} has {len(reader)} frames; the judge grids need a "
                               f"{NUM_CLIP_FRAMES}-frame clip")
        samples = reader.read(list(GRID_FRAMES))
    concept_maps = np.asarray(maps[settings["concept_index"]][list(LATENT_FRAMES)], dtype=np.float32)
    grids = sampled_grids(samples, concept_maps, tile_size=judge.tile_size)
    write_judge_grids(folder, grids)
    write_json_atomic(folder / JUDGE_INFO, {
        "custom_id": custom_id(clip, judge.key),
        "caption": clip.caption,
        "concept": clip.all_concepts[settings["concept_index"]],
        "concept_rule": judge.concept if isinstance(judge.concept, str) else "custom",
        "motion_idx": clip.motion_idx,
        **settings,
        "grid_frames": list(GRID_FRAMES),
        "latent_frames": list(LATENT_FRAMES),
        "images": [f"{n}.jpg" for n in GRID_NAMES],
    })


def _grids_match(folder: Path, clip: MevisClip, judge: JudgeOptions) -> bool:
    try:
        info = json.loads((folder / JUDGE_INFO).read_text())
        return all(info.get(k) == v for k, v in judge.grid_settings(clip).items())
    except (OSError, ValueError, AttributeError):
        return False


def official_clip_maps(result: Any, kind: str) -> np.ndarray:
    """The official ``[C, 13, h, w]`` float32 map of a 49-frame clip from ``result`` (every frame sampled): per
    latent frame of the clip (frame 0, then frames 4k-3 .. 4k), the mean of its frames' blended maps. For a model
    whose window is the whole clip (49 frames) this is the window's own latent map; a model with shorter windows
    (the toy model) gets the same grouping of its blended maps."""
    from vidseg.video.sample import blend_windows, latent_index

    if result.info.num_frames != NUM_CLIP_FRAMES or result.plan.num_sampled != NUM_CLIP_FRAMES:
        raise VideoReadError(f"{result.source.name} has {result.info.num_frames} frames (the model saw "
                             f"{result.plan.num_sampled}); MeViS clips are {NUM_CLIP_FRAMES} frames")
    blended = blend_windows(result.plan, result.window_maps_by_kind[kind])  # [C, 49, h, w]
    groups = torch.from_numpy(latent_index(NUM_CLIP_FRAMES))
    total = torch.zeros(blended.shape[0], NUM_LATENT_FRAMES, *blended.shape[2:]).index_add_(1, groups, blended)
    counts = torch.bincount(groups, minlength=NUM_LATENT_FRAMES).float()
    return (total / counts[None, :, None, None]).numpy().astype(np.float32)


def localize_mevis(segmenter: Any, clips: Sequence[MevisClip], out: str | Path, *, shard: tuple[int, int] = (0, 1),
                   judge: JudgeOptions | None = None, on_event: Callable[[LabelEvent], None] | None = None,
                   progress: Any = None) -> MevisSummary:
    """``vidseg localize --mevis``: every clip of ``shard`` through ``VideoSegmenter.localize_video`` (its caption as
    the prompt, concepts then verbs as the concepts, every frame sampled), written as vidseg's localize folder plus
    the official ``npy/<key>.npy`` of every map kind the backbone reads, then ``run_mevis``'s judge inputs."""
    import copy

    from vidseg.datasets.mevis import OFFICIAL_KEYS, write_official_maps
    from vidseg.runners.plan import settings_fingerprint

    config = copy.deepcopy(segmenter.config)
    config.video.sample_fps = 0  # the official clips are 49 frames, all of them read
    kinds = [k for k in segmenter.model.map_kinds if k in OFFICIAL_KEYS]

    def localize_clip(clip: MevisClip, folder: Path) -> None:
        clip_config = copy.deepcopy(config)
        clip_config.inversion.prompt = clip.caption
        clip_segmenter = segmenter.with_config(clip_config)
        localization = clip_segmenter.localize_video(clip.video, clip.all_concepts, kinds=kinds, progress=progress)
        maps = {kind: official_clip_maps(localization.result, kind) for kind in kinds}
        clip_segmenter.export_localization(localization, folder, also=lambda tmp: write_official_maps(tmp, maps))

    return run_mevis(clips, out, localize_clip, shard=shard, keys=[OFFICIAL_KEYS[k] for k in kinds], judge=judge,
                     fingerprint=settings_fingerprint(config, None), on_event=on_event)
