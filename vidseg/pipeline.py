"""The vidseg pipeline: read video → load model → invert → extract maps, then hand over to post-processing.

``VideoSegmenter`` is a small stateful API over the heavy model (in the spirit of SAM 2's video predictor): build it
once, then ``compute_saliency`` runs the model on a video (the expensive part) and returns a ``SaliencyResult``.
Everything after it is model-free and lives elsewhere: ``vidseg.postprocess`` (probabilities → upsample → refine →
labels, in memory) and ``vidseg.export.run`` (the output folder); ``iter_labels`` and ``export_labels`` here are
thin delegates that pass the segmenter's config. ``SaliencyResult.load`` rebuilds a result from ``saliency.npz``,
so post-processing can be re-run without the model.
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from vidseg import postprocess
from vidseg.config import VidsegConfig, load_config
from vidseg.errors import ConfigError, VidsegError
from vidseg.export import run as export_run
from vidseg.models.base import TextEmbeddings
from vidseg.models.text import check_classes
from vidseg.progress import CancellableProgress, NoProgress, Progress
from vidseg.result import SaliencyResult

if TYPE_CHECKING:
    from vidseg.localize import Localization

# (prompt, classes) -> their embeddings, as the backbone encoded them
TextCache = dict[tuple[str, tuple[str, ...]], TextEmbeddings]


class VideoSegmenter:
    """Segments videos by class name with a video diffusion transformer (any ``vidseg.models.base.Backbone``).

    Example::

        seg = VideoSegmenter.from_pretrained("THUDM/CogVideoX-2b")
        result = seg.compute_saliency("video.mp4", ["person", "dog"])
        seg.export_labels(result, "out/video")
    """

    def __init__(self, model: Any, config: VidsegConfig):
        self.model = model
        self.config = config
        self._text_cache: TextCache = {}

    @classmethod
    def from_pretrained(cls, model: str | None = None, *, config: VidsegConfig | None = None) -> "VideoSegmenter":
        """Load weights: a hub id, a local diffusers folder or ``toy`` (default ``config.model.source``).

        Without ``config`` the settings are the ones ``--model`` gives on the CLI: the model's preset and its
        folder's ``vidseg.yaml`` (``vidseg.config.load_config(model=...)``). An explicit ``config`` is used as it is.
        """
        from vidseg.models.hub import load_model

        if config is None:
            config = load_config(model=model)
        else:
            config = copy.deepcopy(config)  # the caller's stays as it was
            if model is not None:
                config.model.source = model
        config.validate()
        m = config.model
        loaded = load_model(m.source, device=m.device, dtype=m.dtype, offload=m.offload, vae_tiling=m.vae_tiling)
        loaded.check_settings(config)  # from the model's config files: nothing heavy is loaded yet
        return cls(loaded, config)

    def with_config(self, config: VidsegConfig) -> "VideoSegmenter":
        """A segmenter on the same loaded model (and texts already encoded) with other settings, e.g. the web
        demo's per-job choices. ``config`` must be validated; the model checks what concerns it."""
        self.model.check_settings(config)
        other = VideoSegmenter(self.model, config)
        other._text_cache = self._text_cache
        return other

    # -- text ---------------------------------------------------------------------------------------------------

    def prompt_for(self, classes: Sequence[str]) -> str:
        from vidseg.models.text import default_prompt

        return self.config.inversion.prompt or default_prompt(list(classes))

    def text_requests(self, jobs: Sequence[tuple[Any, Sequence[str]]]) -> list[tuple[str, list[str]]]:
        """The (prompt, classes) pair each ``(video, classes)`` job needs; jobs whose classes are refused are left
        out (they fail on their own when run)."""
        requests = []
        for _, classes in jobs:
            try:
                names = check_classes(classes)
                self.model.check_settings(self.config, names)
            except ConfigError:
                continue
            requests.append((self.prompt_for(names), names))
        return requests

    def encode_texts(self, requests: Sequence[tuple[str, Sequence[str]]]) -> TextCache:
        """Encode every (prompt, classes) pair not cached yet, then free the text encoder before the transformer
        runs.

        Dataset labeling calls this once for all videos so the text encoder is loaded once. Returns the embeddings of
        ``requests``, which ``add_texts`` gives to another segmenter of the same model (the Ray runner's actors).
        """
        missing = [(p, tuple(c)) for p, c in requests if (p, tuple(c)) not in self._text_cache]
        for key in dict.fromkeys(missing):
            self._text_cache[key] = self.model.encode_text(key[0], list(key[1]))
        if missing:
            self.model.release_text_encoder()
        return {(p, tuple(c)): self._text_cache[(p, tuple(c))] for p, c in requests}

    def add_texts(self, embeddings: TextCache) -> None:
        """Use text embeddings that another segmenter of the same model encoded (``encode_texts``)."""
        self._text_cache.update(embeddings)

    def _text(self, prompt: str, classes: Sequence[str]) -> TextEmbeddings:
        self.encode_texts([(prompt, classes)])
        return self._text_cache[(prompt, tuple(classes))]

    # -- model pass ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def compute_saliency(
        self, video: str | Path, classes: Sequence[str], *, progress: Progress | None = None,
        kinds: Sequence[str] = (),
    ) -> SaliencyResult:
        """Run the model on every window of ``video`` and return the class saliency per sampled frame.

        ``kinds``: map kinds to read in the same pass besides ``config.maps.kind`` (e.g. every kind the backbone
        offers, for the MeViS layout); they are kept in ``window_maps_by_kind``."""
        from vidseg.video.read import open_video
        from vidseg.video.sample import blend_windows, plan_sampling

        progress = progress or NoProgress()
        cfg = self.config
        classes = check_classes(classes)
        self.model.check_settings(self.config, classes)
        kinds = tuple(dict.fromkeys((cfg.maps.kind, *kinds)))
        unknown = [k for k in kinds if k not in self.model.map_kinds]
        if unknown:
            raise ConfigError(f"{self.model.display_name} cannot read the map kind {unknown[0]!r}; it reads "
                              f"{', '.join(self.model.map_kinds)}")
        seconds: dict[str, float] = {}
        prompt = self.prompt_for(classes)
        with _timed(seconds, "text"):
            progress.start("encode text")
            text = self._text(prompt, classes)
            progress.finish()

        with open_video(video, reader=cfg.video.reader, frame_folder_fps=cfg.video.frame_folder_fps,
                        start=cfg.video.start, end=cfg.video.end) as reader:
            info = reader.info
            plan = plan_sampling(
                info.num_frames, info.fps, sample_fps=cfg.video.sample_fps,
                window_frames=cfg.video.num_frames, window_overlap=cfg.video.window_overlap,
                timestamps=info.timestamps,
            )
            by_kind: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
            null_maps: list[torch.Tensor] = []
            window_frames = reader.read_windows([plan.sampled_frames[window] for window in plan.windows])
            for w in range(len(plan.windows)):
                tag = f"window {w + 1}/{len(plan.windows)}" if len(plan.windows) > 1 else "video"
                with _timed(seconds, "decode"):
                    progress.start(f"decode {tag}")
                    frames = next(window_frames)
                    progress.finish()
                maps, valid_box, timestep = self.window_saliency(frames, text, progress=progress, tag=tag,
                                                                 seconds=seconds, kinds=kinds)
                for kind in kinds:  # the classes, then the null concept
                    by_kind[kind].append(maps[kind][:-1])
                null_maps.append(maps[cfg.maps.kind][-1])
        window_maps = by_kind[cfg.maps.kind]
        return SaliencyResult(
            source=Path(video), classes=classes, prompt=prompt, info=info, plan=plan, window_maps=window_maps,
            sampled=blend_windows(plan, window_maps), valid_box=valid_box, timestep=timestep, seconds=seconds,
            kind=cfg.maps.kind, window_maps_by_kind=by_kind, window_null_maps=null_maps,
        )

    def iter_saliency(
        self, jobs: Sequence[tuple[str | Path, Sequence[str]]], *, progress: Progress | None = None
    ) -> Iterator[tuple[int, SaliencyResult | Exception]]:
        """Saliency of each ``(video, classes)`` job in order, computing job i + 1 while the caller handles job i.

        The model (GPU) then works on the next video while the caller refines and exports the current one (CPU), so
        neither waits for the other. Each item is ``(job index, result)``, where a failed job yields its exception
        instead of stopping the rest. All texts are encoded first, so T5 is loaded once and freed before the model
        runs. Closing the iterator (or Ctrl-C in the caller) stops the background work at its next step.
        """
        if not jobs:
            return
        progress = progress or NoProgress()
        cancelled = threading.Event()
        lane = CancellableProgress(progress.lane(), cancelled)
        self.encode_texts(self.text_requests(jobs))

        def compute(job: tuple[str | Path, Sequence[str]]) -> SaliencyResult | Exception:
            try:
                return self.compute_saliency(job[0], job[1], progress=lane)
            except Exception as exc:  # reported to the caller with the job, not raised in the worker
                return exc

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidseg-model")
        try:
            future = pool.submit(compute, jobs[0])
            for i in range(len(jobs)):
                result = future.result()
                if i + 1 < len(jobs):
                    future = pool.submit(compute, jobs[i + 1])
                yield i, result
        finally:
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)

    @torch.inference_mode()
    def window_saliency(
        self,
        frames: np.ndarray,
        text: TextEmbeddings,
        *,
        progress: Progress | None = None,
        tag: str = "video",
        seconds: dict[str, float] | None = None,
        kinds: Sequence[str] = (),
    ) -> tuple[dict[str, torch.Tensor], tuple[int, int, int, int], float]:
        """The model pass on one window: frames uint8 ``[num_frames, H, W, 3]`` → VAE → inversion → maps.

        Returns the maps of ``config.maps.kind`` and of ``kinds``, each ``[C + 1, F_lat, h, w]``, the classes then
        the null concept (cropped to the valid region for ``resize: pad``), the valid box in model pixels and the
        read-out timestep.
        """
        from vidseg.video.sample import crop_to_valid, fit_frames

        progress = progress or NoProgress()
        seconds = {} if seconds is None else seconds
        cfg, model, inv = self.config, self.model, self.config.inversion
        with _timed(seconds, "vae"):
            progress.start(f"VAE encode {tag}")
            pixels, valid_box = fit_frames(frames, cfg.video.height, cfg.video.width, resize=cfg.video.resize)
            latents = model.encode_video(pixels)
            progress.finish()
        with _timed(seconds, "inversion"):
            progress.start(f"{model.stage_labels[inv.method]} {tag}", total=model.inversion_steps(inv))
            noisy, timestep = model.noise_to_readout(latents, text, inv, on_step=lambda i, n: progress.advance())
            progress.finish()
        with _timed(seconds, "maps"):
            progress.start(f"read maps {tag}")
            read = model.read_maps(noisy, timestep, text, cfg.maps, kinds=tuple(dict.fromkeys((cfg.maps.kind, *kinds))))
            progress.finish()
        for maps in read.values():
            if not torch.isfinite(maps).all():
                raise VidsegError(f"the model produced non-finite maps (NaN or infinity) at {tag}; with --dtype "
                                  f"float16 try bfloat16 or float32, else the weights may be broken")
        read = {k: crop_to_valid(m, valid_box, cfg.video.height, cfg.video.width) for k, m in read.items()}
        return read, valid_box, timestep

    # -- post-processing ----------------------------------------------------------------------------------------

    def export_labels(
        self,
        result: SaliencyResult,
        out_dir: str | Path,
        *,
        progress: Progress | None = None,
        frame_names: Sequence[str] | None = None,
        size: tuple[int, int] | None = None,
        flat: bool = False,
    ) -> Path:
        """Write labels for every frame (or only ``frame_names``) of ``result``'s video into ``out_dir``.

        See ``vidseg.export.run.export_labels``; this passes the segmenter's config.
        """
        return export_run.export_labels(
            result, out_dir, self.config, progress=progress, frame_names=frame_names, size=size, flat=flat,
            model_name=str(self.model.source),
        )

    def iter_labels(
        self, result: SaliencyResult, *, frame_indices: Sequence[int] | np.ndarray | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame_index, labels [H, W] uint8)`` for every frame of ``result``'s video, in memory (no files):
        probabilities, upsampling and CRF with the segmenter's config, a chunk of frames at a time."""
        return postprocess.iter_labels(result, self.config, frame_indices=frame_indices)

    def predict(
        self, videos: Sequence[str | Path], classes: Sequence[str], out_dir: str | Path, *,
        progress: Progress | None = None,
    ) -> Iterator[Path]:
        """Saliency + labels for each video, written to ``out_dir/<video stem>/``; yields each folder when done.

        The model runs on the next video while the current one is refined and exported (``iter_saliency``).
        """
        for i, result in self.iter_saliency([(v, classes) for v in videos], progress=progress):
            if isinstance(result, Exception):
                raise result
            yield self.export_labels(result, Path(out_dir) / Path(videos[i]).stem, progress=progress)

    # -- where and when (vidseg localize) -----------------------------------------------------------------------

    def localize_video(self, video: str | Path, concepts: Sequence[str], *,
                       progress: Progress | None = None, kinds: Sequence[str] = ()) -> "Localization":
        """Where and when each concept (nouns and verbs alike) is present in ``video``, in memory: the model pass,
        then ``vidseg.localize.localize`` with the segmenter's config. ``kinds``: see ``compute_saliency``."""
        from vidseg.localize import check_concepts, localize

        result = self.compute_saliency(video, check_concepts(concepts), progress=progress, kinds=kinds)
        return localize(result, self.config)

    def export_localization(self, localization: "Localization", out_dir: str | Path, *,
                            also: Any = None) -> Path:
        """Write ``localization``'s folder (``vidseg.export.localization.export_localization``)."""
        from vidseg.export.localization import export_localization

        return export_localization(localization, out_dir, self.config, model_name=str(self.model.source),
                                   also=also)

    def localize(self, videos: Sequence[str | Path], concepts: Sequence[str], out_dir: str | Path, *,
                 progress: Progress | None = None) -> Iterator[Path]:
        """``localize_video`` then ``export_localization`` for each video into ``out_dir/<video stem>/``; yields
        each folder when done (the next video's model pass runs while the current one is written)."""
        from vidseg.localize import check_concepts, localize

        progress = progress or NoProgress()
        names = check_concepts(concepts)
        for i, result in self.iter_saliency([(v, names) for v in videos], progress=progress):
            if isinstance(result, Exception):
                raise result
            progress.start(f"masks {Path(videos[i]).name}")
            folder = self.export_localization(localize(result, self.config), Path(out_dir) / Path(videos[i]).stem)
            progress.finish()
            yield folder


@contextmanager
def _timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
