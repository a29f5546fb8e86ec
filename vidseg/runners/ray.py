"""``vidseg label --ray``: the dataset labeling run on a Ray cluster, writing exactly what the single-process run
writes.

* **Model actors**, one per GPU (``gpus_per_actor`` each, fractional for small models; one CPU actor where the
  cluster has no GPU), each hold one ``VideoSegmenter`` whose weights load once. The first actor encodes every
  video's text once for the run and frees T5; the others receive the embeddings.
* **Dispatch** is dynamic, longest video first, so no actor idles while another holds a long tail (the rules:
  ``vidseg.runners.scheduler``).
* **Export** (probabilities, upsampling, CRF, files) runs as a one-CPU Ray task per video beside the actors, through
  ``label_one`` and ``export_dataset_video`` like the single-process run: temporary folder, marker, rename. A killed
  worker or node loses at most its videos in flight.
* **Faults**: a failing video is retried (``retries``, on another actor when there is one) and then recorded as
  failed with its reason; a dead actor is replaced and its video requeued; Ctrl-C (or SIGTERM) cancels everything
  in flight, removes its temporary folders and leaves only complete videos.

Paths must be visible to every node under the same name (a shared filesystem), as they are on one machine.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from vidseg.datasets.sources import DatasetVideo
from vidseg.errors import ConfigError, MissingDependencyError, VidsegError, first_line
from vidseg.runners.plan import LabelPlan, export_dataset_video, plan_labels
from vidseg.runners.resumable import (
    LabelEvent, LabelLog, LabelSummary, VideoOutcome, is_complete, label_one, remove_leftovers,
)
from vidseg.runners.scheduler import Job, Scheduler

INSTALL_HINT = "pip install 'vidseg[ray]'"
STOP_GRACE_SECONDS = 30.0  # how long Ctrl-C waits for exports in flight to remove their temporary folders


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"--ray needs Ray (>= 2.40), which is not installed: {INSTALL_HINT}") from None
    return ray


class SegmenterActor:
    """The body of a model actor: one ``VideoSegmenter``, loaded once, computing one video's saliency per call."""

    def __init__(self, config: Any):
        from vidseg.pipeline import VideoSegmenter

        logging.getLogger("vidseg").setLevel(logging.WARNING)
        self.segmenter = VideoSegmenter.from_pretrained(config=config)

    def encode_texts(self, requests: list[tuple[str, list[str]]]) -> tuple[int, Any]:
        """``(count, embeddings)`` on the CPU (any actor's device takes them); the driver reads only the count."""
        embeddings = self.segmenter.encode_texts(requests)
        return len(embeddings), {key: text.to("cpu") for key, text in embeddings.items()}

    def add_texts(self, embeddings: Any) -> None:
        self.segmenter.add_texts(embeddings)

    def saliency(self, source: str, classes: list[str]) -> tuple[dict[str, Any], Any]:
        """``(status, result)``: status ``{"ok": True}`` or ``{"ok": False, "reason", "traceback"}``. Two returns,
        so the driver reads the small status and only the export task fetches the result."""
        try:
            return {"ok": True}, self.segmenter.compute_saliency(source, classes)
        except Exception as exc:  # reported to the driver as the video's failure, the actor lives on
            bug = not isinstance(exc, VidsegError)
            reason = f"{type(exc).__name__}: {first_line(exc)}" if bug else first_line(exc)
            return {"ok": False, "reason": reason, "traceback": traceback.format_exc() if bug else None}, None


def write_video(plan: LabelPlan, video: DatasetVideo, result: Any, config: Any, model_name: str) -> VideoOutcome:
    """The body of an export task: ``label_one`` with ``export_dataset_video``, as the single-process run, refining
    in the task's own process (it holds one CPU; Ray runs as many such tasks as there are CPUs)."""
    def segment_video(video: DatasetVideo, folder: Path) -> None:
        export_dataset_video(result, video, folder, config, flat=plan.flat, model_name=model_name, workers=1)

    return label_one(video, plan.out_dir, segment_video, plan.expected_files(video), plan.fingerprint)


@contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Undo the signal handlers ``ray.init`` installs in the driver: its SIGTERM handler ends the process at once,
    where the caller's (the CLI's) turns SIGTERM into a clean stop that removes temporary folders."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def video_length(video: DatasetVideo) -> float:
    """How long ``video`` is, for longest-first dispatch: frames of a frame folder, seconds x 25 of a file (from
    its header; 0 when unreadable, so a broken file is tried last)."""
    source = Path(video.source)
    if source.is_dir():
        return float(len(video.output_stems) or sum(1 for p in source.iterdir() if p.is_file()))
    try:
        import av

        with av.open(str(source)) as container:
            return (container.duration or 0) / 1e6 * 25.0
    except Exception:  # broken or exotic file: it fails, with its reason, when the model reads it
        return 0.0


class RayLabeler:
    """Label a dataset on Ray (module docstring). ``run`` returns the same ``LabelSummary`` as ``label_videos``.

    Args:
        config: the run's validated ``VidsegConfig`` (the same one ``VideoSegmenter.from_pretrained`` takes).
        address: an existing cluster to join (``ray.init(address=...)``); None starts a local one for the run
            (all local GPUs and CPUs), or uses the one this process already joined.
        num_actors: model actors; default one per ``gpus_per_actor`` GPUs of the cluster, 1 without GPUs.
        gpus_per_actor: GPUs each actor reserves (fractional to share a GPU); 0 on a cluster without GPUs.
        retries: how many more times a failing video is tried.
    """

    def __init__(self, config: Any, *, address: str | None = None, num_actors: int | None = None,
                 gpus_per_actor: float = 1.0, retries: int = 2):
        if gpus_per_actor < 0 or retries < 0 or (num_actors is not None and num_actors < 1):
            raise ConfigError("--gpus-per-actor and --retries must be >= 0 and --actors >= 1")
        self.ray = import_ray()
        self.config, self.address = config, address
        self.num_actors, self.gpus_per_actor, self.retries = num_actors, gpus_per_actor, retries
        self.actors: list[Any] = []  # handles, by worker index; a replaced actor takes its index
        self._exports: dict[Any, Job] = {}  # export task ref -> its video, while in flight
        self._owns_cluster = False

    # -- cluster ------------------------------------------------------------------------------------------------

    def _start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            with _keep_signal_handlers():
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=False)
            self._owns_cluster = self.address is None
        resources = ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
        per_actor = self.gpus_per_actor if gpus >= self.gpus_per_actor > 0 else 0.0
        count = self.num_actors or (max(1, math.floor(gpus / per_actor + 1e-9)) if per_actor else 1)
        if per_actor and count * per_actor > gpus + 1e-9:
            raise ConfigError(f"{count} actors x {per_actor:g} GPUs need more than the cluster's {gpus:g} GPUs; "
                              f"lower --actors or --gpus-per-actor")
        if count + 1 > cpus:
            raise ConfigError(f"the Ray cluster has {cpus:g} CPUs: {count} model actors and one export task need "
                              f"{count + 1}; lower --actors or add CPUs")
        self._actor_class = ray.remote(num_cpus=1, num_gpus=per_actor, max_restarts=0)(SegmenterActor)
        self._export = ray.remote(num_cpus=1, max_retries=0)(write_video)
        self.actors = [self._new_actor() for _ in range(count)]

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.config)

    def _stop(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._owns_cluster:
            self.ray.shutdown()
            self._owns_cluster = False

    # -- the run ------------------------------------------------------------------------------------------------

    def run(
        self,
        videos: Sequence[DatasetVideo],
        out_dir: str | Path,
        *,
        classes: Sequence[str] | None = None,
        shard: tuple[int, int] = (0, 1),
        progress: Any = None,
        on_event: Callable[[LabelEvent], None] | None = None,
        vocabulary: str | None = None,
    ) -> LabelSummary:
        """Label ``shard`` of ``videos`` into ``out_dir``: the contract of ``label_videos``, on Ray."""
        from vidseg.progress import NoProgress

        progress = progress or NoProgress()
        plan = plan_labels(self.config, videos, out_dir, classes=classes, shard=shard, vocabulary=vocabulary)
        log = LabelLog(plan.out_dir, shard, len(plan.videos), names=[v.name for v in plan.videos],
                       protocol=plan.protocol)
        pending = {v.name for v in plan.pending}
        for position, video in enumerate(plan.videos, 1):
            if video.name not in pending:
                outcome = VideoOutcome(video.name, "skipped", "complete from an earlier run")
                log.record(outcome)
                if on_event:
                    on_event(LabelEvent("skipped", video, position, len(plan.videos), outcome))
        if not plan.pending:
            return log.close()
        positions = {v.name: i for i, v in enumerate(plan.videos, 1)}
        jobs = [Job(v, positions[v.name]) for v in sorted(plan.pending, key=video_length, reverse=True)]
        self._exports = {}
        try:
            progress.start("start Ray")
            self._start()
            progress.finish()
            self._dispatch(plan, jobs, log, progress, on_event)
        except KeyboardInterrupt as exc:
            self._cancel_exports(plan, log, str(exc))
        finally:
            self._stop()
        return log.close()

    def _cancel_exports(self, plan: LabelPlan, log: LabelLog, why: str) -> None:
        """Stop every export in flight: each removes its temporary folder (or finishes its rename first)."""
        ray = self.ray
        for ref in self._exports:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: label_one cleans up and reports it
        ray.wait(list(self._exports), num_returns=len(self._exports), timeout=STOP_GRACE_SECONDS)
        for ref in self._exports:
            ray.cancel(ref, force=True)
        how = f"stopped by {why}" if why else "stopped by Ctrl-C"
        for job in self._exports.values():
            remove_leftovers(plan.out_dir, job.video.name)
            if not is_complete(plan.out_dir / job.video.name, plan.expected_files(job.video), plan.fingerprint):
                log.record(VideoOutcome(job.video.name, "interrupted", f"{how}; its partial output was removed"))
        log.summary.interrupted = True
        log.write()

    def _dispatch(self, plan: LabelPlan, jobs: list[Job], log: LabelLog, progress: Any,
                  on_event: Callable[[LabelEvent], None] | None) -> None:
        """Run ``jobs`` (longest first) to their outcomes: the ``Scheduler`` decides, this submits and waits."""
        ray = self.ray
        total = len(plan.videos)
        scheduler = Scheduler(jobs, len(self.actors), self.retries)
        lanes = [progress.lane() for _ in self.actors]
        overall = progress.lane()
        overall.start(f"videos on {len(self.actors)} actors", total=len(jobs))
        model_calls: dict[Any, tuple[int, Job, Any]] = {}  # status ref -> (worker, job, result ref)
        exports = self._exports
        model_name = str(self.config.model.source)
        plan_ref, config_ref = ray.put(plan), ray.put(self.config)  # stored once, not with every export
        texts = self._encode_texts(plan, jobs, progress)

        def emit(kind: str, job: Job, outcome: VideoOutcome | None = None, worker: int | None = None) -> None:
            if on_event:
                on_event(LabelEvent(kind, job.video, job.position, total, outcome, worker))

        def settle(job: Job, outcome: VideoOutcome, worker: int | None = None) -> None:
            """Report what the scheduler made of a try: a retry, or the video's final outcome."""
            if outcome.status == "retry":
                emit("retry", job, outcome, worker)
                return
            log.record(outcome)
            overall.advance()
            emit(outcome.status, job, outcome)

        while not scheduler.finished:
            for worker, job in scheduler.assign():
                status, result = self.actors[worker].saliency.options(num_returns=2).remote(
                    str(job.video.source), plan.classes[job.video.name])
                model_calls[status] = (worker, job, result)
                lanes[worker].start(f"actor {worker}: {job.video.name}")
                emit("start", job, worker=worker)
            ready, _ = ray.wait([*model_calls, *exports], num_returns=1)
            ref = ready[0]
            if ref in model_calls:
                worker, job, result = model_calls.pop(ref)
                lanes[worker].finish()
                try:
                    status = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    self.actors[worker] = self._new_actor()  # restarted: reloads the weights
                    self.actors[worker].add_texts.remote(texts)
                    scheduler.on_model_done(worker)
                    settle(job, scheduler.fail(job, worker, f"the model actor died ({first_line(exc)[:200]})",
                                               death=True), worker)
                    continue
                scheduler.on_model_done(worker)
                if status["ok"]:
                    exports[self._export.remote(plan_ref, job.video, result, config_ref, model_name)] = job
                else:
                    settle(job, scheduler.fail(job, worker, status["reason"], status["traceback"]), worker)
            else:
                job = exports.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # its worker died, or the result was lost with its actor
                    settle(job, scheduler.fail(job, None, f"the export worker failed ({first_line(exc)[:200]})",
                                               death=True))
                    continue
                if outcome.status == "done":
                    settle(job, scheduler.on_export_done(job, outcome))
                elif outcome.status == "interrupted":
                    raise KeyboardInterrupt(outcome.reason)
                else:
                    settle(job, scheduler.fail(job, None, outcome.reason, outcome.traceback))
        overall.finish()

    def _encode_texts(self, plan: LabelPlan, jobs: list[Job], progress: Any) -> Any:
        """One text encoding for the run, on the first actor; every actor gets the result (the object ref, which a
        replacement actor gets too)."""
        requests = [(job.video.source, plan.classes[job.video.name]) for job in jobs]
        progress.start("encode texts (once for the run)")
        count, texts = self.actors[0].encode_texts.options(num_returns=2).remote(self._text_requests(requests))
        try:
            self.ray.get(count)  # a model that cannot load fails here, once, before any video
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise VidsegError(f"the model actor could not load the model: {first_line(cause)}") from None
        for actor in self.actors:
            actor.add_texts.remote(texts)
        progress.finish()
        return texts

    def _text_requests(self, jobs: list[tuple[Any, list[str]]]) -> list[tuple[str, list[str]]]:
        from vidseg.pipeline import VideoSegmenter

        # Prompts and class checks need only the model's config files, which the driver reads without weights.
        return VideoSegmenter.from_pretrained(config=self.config).text_requests(jobs)

