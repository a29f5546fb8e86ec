"""One video's ``vidseg localize`` folder: per-concept masks, the strength curves (CSV and plot), the heatmap video
and ``localize.json``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
from PIL import Image

from vidseg.config import VidsegConfig
from vidseg.export.heatmap import HEATMAP_FILE, HeatmapVideoWriter
from vidseg.export.palette import voc_palette
from vidseg.files import atomic_dir, write_json_atomic
from vidseg.localize import concept_folder, iter_concept_frames
from vidseg.version import __version__

if TYPE_CHECKING:
    from vidseg.localize import Localization

LOCALIZE_FILE = "localize.json"
CURVES_CSV = "curves.csv"
CURVES_PLOT = "curves.png"


def export_localization(
    localization: Localization, out_dir: str | Path, config: VidsegConfig, *, model_name: str = "",
    also: Callable[[Path], None] | None = None, workers: int | None = None,
) -> Path:
    """Write ``out_dir`` atomically (a temporary sibling renamed on success):

    * ``masks/<concept>/00000.png ...``: 0 / 255 per input frame at the input's size, empty where inactive;
    * ``curves.csv`` (frame, time in seconds, each concept's strength) and ``curves.png``, their plot;
    * ``saliency.mp4``: each concept's probability map against the background over the frames;
    * ``localize.json``: per concept the map kind, the active frame ranges (frames and seconds) and the settings.

    ``also(tmp_dir)`` may add files (e.g. the MeViS layout) before the rename.
    """
    out_dir = Path(out_dir)
    result = localization.result
    concepts = result.classes
    names = result.info.frame_names
    with atomic_dir(out_dir) as tmp:
        folders = [tmp / "masks" / concept_folder(c) for c in concepts]
        for folder in folders:
            folder.mkdir(parents=True)
        heatmaps = HeatmapVideoWriter(tmp / HEATMAP_FILE, concepts, result.info.fps) if config.export.heatmaps \
            else None
        area = np.zeros((len(concepts),))
        try:
            for out in iter_concept_frames(localization, config, workers=workers):
                for c, folder in enumerate(folders):
                    Image.fromarray(out.masks[c].astype(np.uint8) * 255).save(folder / f"{names[out.frame_idx]}.png")
                area += out.masks.reshape(len(concepts), -1).mean(axis=1)
                if heatmaps is not None:
                    heatmaps.add(out.frame_idx, names[out.frame_idx], frame=out.frame, probs=out.probs)
        finally:
            if heatmaps is not None:
                heatmaps.close()
        (tmp / CURVES_CSV).write_text(curves_csv(localization))
        Image.fromarray(plot_curves(localization, config.localize.threshold)).save(tmp / CURVES_PLOT)
        write_json_atomic(tmp / LOCALIZE_FILE, localize_summary(localization, config, model_name,
                                                                area / max(result.info.num_frames, 1)))
        if also is not None:
            also(tmp)
    return out_dir


def curves_csv(localization: Localization) -> str:
    """A row per input frame: its index, its time in seconds, then each concept's strength."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time_s", *localization.result.classes])
    strengths = np.stack([t.strength for t in localization.tracks], axis=1)
    for i, (time, row) in enumerate(zip(localization.times, strengths)):
        writer.writerow([i, f"{time:.4f}", *(f"{v:.4f}" for v in row)])
    return buffer.getvalue()


def localize_summary(localization: Localization, config: VidsegConfig, model_name: str,
                     mean_area: np.ndarray) -> dict:
    """What ``localize.json`` holds."""
    result = localization.result
    concepts = []
    for track, area in zip(localization.tracks, mean_area):
        intervals = track.intervals
        concepts.append({
            "concept": track.concept, "folder": concept_folder(track.concept), "map_kind": result.kind,
            "active_frames": [list(i) for i in intervals],
            "active_seconds": [[round(s, 4) for s in localization.seconds(i)] for i in intervals],
            "frames_active": int(track.active.sum()),
            "peak_strength": float(track.strength.max()) if len(track.strength) else 0.0,
            "mean_mask_area": float(area),  # share of the frame, over all frames
        })
    return {"vidseg_version": __version__, "video": str(result.source), "model": model_name, "prompt": result.prompt,
            "num_frames": result.info.num_frames, "fps": result.info.fps, "range": result.info.source_range(),
            "timestep": result.timestep,
            "concepts": concepts, "settings": config.to_dict()}


def plot_curves(localization: Localization, threshold: float, size: tuple[int, int] = (400, 960)) -> np.ndarray:
    """``[H, W, 3]`` uint8: each concept's strength over time (seconds), the threshold dashed, and under the plot a
    bar per concept marking its active frames."""
    height, width = size
    tracks, times = localization.tracks, localization.times
    colours = [tuple(int(v) for v in c) for c in voc_palette()[1:len(tracks) + 1]]
    bar_h, legend_w = 10, 170
    left, right, top, bottom = 48, width - legend_w, 16, height - 34 - bar_h * len(tracks)
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (170, 170, 170)
    duration = max(float(times[-1]) if len(times) else 0.0, 1e-6)

    def x_of(t: np.ndarray | float) -> np.ndarray:
        return np.round(left + (np.asarray(t) / duration) * (right - left)).astype(np.int32)

    def y_of(v: np.ndarray | float) -> np.ndarray:
        return np.round(bottom - np.clip(np.asarray(v), 0, 1) * (bottom - top)).astype(np.int32)

    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        cv2.line(image, (left, int(y_of(v))), (right, int(y_of(v))), (230, 230, 230), 1)
        cv2.putText(image, f"{v:.2f}", (4, int(y_of(v)) + 4), font, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    for x in range(left, right, 8):  # the threshold, dashed
        cv2.line(image, (x, int(y_of(threshold))), (min(x + 4, right), int(y_of(threshold))), grey, 1)
    cv2.rectangle(image, (left, top), (right, bottom), (120, 120, 120), 1)
    for k, track in enumerate(tracks):
        points = np.stack([x_of(times), y_of(track.strength)], axis=1).reshape(-1, 1, 2)
        cv2.polylines(image, [points], False, colours[k], 2, cv2.LINE_AA)
        y0 = bottom + 6 + k * bar_h
        for first, last in track.intervals:
            end = times[last + 1] if last + 1 < len(times) else duration
            cv2.rectangle(image, (int(x_of(times[first])), y0), (max(int(x_of(end)), int(x_of(times[first])) + 1),
                                                                  y0 + bar_h - 3), colours[k], -1)
        cv2.rectangle(image, (right + 12, top + 6 + 18 * k), (right + 26, top + 18 + 18 * k), colours[k], -1)
        cv2.putText(image, track.concept[:20], (right + 32, top + 17 + 18 * k), font, 0.45, (20, 20, 20), 1,
                    cv2.LINE_AA)
    label_y = height - 8
    for t in np.linspace(0, duration, 6):
        cv2.putText(image, f"{t:.1f}s", (int(x_of(t)) - 12, label_y), font, 0.35, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(image, "strength", (left + 4, top + 12), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    return image
