"""Which video goes to which model worker next, and what a result or a failure means for it: the dispatch rules
of the Ray runner, in plain Python (no Ray, no model), so they can be tested on their own.

A job lives in one of three places: the queue (longest video first; a retried one goes back to the front), on a
model worker, or in export (the worker is free again while its video is written). ``assign`` hands queued jobs to
idle workers; the runner reports back with ``on_model_done`` and ``on_export_done``, or ``fail``. Those that end a
job return its final ``VideoOutcome``, which the runner records.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from vidseg.datasets.sources import DatasetVideo
from vidseg.runners.resumable import VideoOutcome

ACTOR_DEATHS_ALLOWED = 2  # a video on which more model workers died is recorded as failed (e.g. it runs OOM)


@dataclass
class Job:
    """One pending video: ``position`` is its 1-based place in the shard; ``attempts`` counts failed (or the one
    successful) tries, ``deaths`` the workers that died with it; ``started`` is when it first went to a worker."""

    video: DatasetVideo
    position: int
    attempts: int = 0
    deaths: int = 0
    failed_on: set[int] = field(default_factory=set)
    started: float = 0.0


class Scheduler:
    """The dispatch state of one run: queued jobs, idle workers, and how many jobs are in flight.

    Args:
        jobs: the pending videos, longest first (the order they are handed out in).
        num_workers: model workers, numbered 0 .. num_workers - 1 (a replaced worker keeps its number).
        retries: how many more times a failing video is tried.
        deaths_allowed: how many workers may die with one video before it is recorded as failed.
        clock: seconds, for the outcomes' durations.
    """

    def __init__(self, jobs: Sequence[Job], num_workers: int, retries: int, *,
                 deaths_allowed: int = ACTOR_DEATHS_ALLOWED, clock: Callable[[], float] = time.perf_counter):
        self.queue = collections.deque(jobs)
        self.idle = list(range(num_workers))
        self.num_workers, self.retries, self.deaths_allowed = num_workers, retries, deaths_allowed
        self.clock = clock
        self.in_flight = 0  # jobs on a worker or in export

    @property
    def finished(self) -> bool:
        """Every job has its final outcome."""
        return not self.queue and not self.in_flight

    def assign(self) -> list[tuple[int, Job]]:
        """``(worker, job)`` for every idle worker that can take a queued job now; those workers are busy after.

        When every worker is idle and jobs are queued, at least one is handed out, so a run never stalls.
        """
        assigned = []
        for worker in list(self.idle):
            job = self.next_job(worker)
            if job is None:
                continue
            self.idle.remove(worker)
            self.in_flight += 1
            job.started = job.started or self.clock()
            assigned.append((worker, job))
        return assigned

    def next_job(self, worker: int) -> Job | None:
        """Take the longest queued video ``worker`` has not failed; one it has failed only when every worker has
        failed it (no other worker could take it instead)."""
        for job in self.queue:
            if worker not in job.failed_on:
                break
        else:
            job = next((j for j in self.queue if len(j.failed_on) >= self.num_workers), None)
            if job is None:
                return None
        self.queue.remove(job)
        return job

    def on_model_done(self, worker: int) -> None:
        """``worker`` returned (its job goes on to export, or to ``fail``) or was replaced: it is idle again."""
        self.idle.append(worker)

    def on_export_done(self, job: Job, outcome: VideoOutcome) -> VideoOutcome:
        """``job``'s video was written (``outcome.status`` is done): its final outcome, timed from the first try."""
        self.in_flight -= 1
        job.attempts += 1
        outcome.seconds = round(self.clock() - job.started, 3)
        outcome.attempts = self._attempts(job)
        return outcome

    def fail(self, job: Job, worker: int | None, reason: str, trace: str | None = None, *,
             death: bool = False) -> VideoOutcome:
        """A try of ``job`` failed on ``worker`` (None: in export); ``death``: the worker died rather than raised.

        Returns a ``retry`` outcome with the job back at the front of the queue, or, its tries spent, the final
        ``failed`` outcome.
        """
        self.in_flight -= 1
        if death:
            job.deaths += 1
        else:
            job.attempts += 1
        if worker is not None:
            job.failed_on.add(worker)
        if job.attempts > self.retries or job.deaths > self.deaths_allowed:
            outcome = VideoOutcome(job.video.name, "failed", reason, round(self.clock() - job.started, 3), trace)
            outcome.attempts = self._attempts(job)
            return outcome
        self.queue.appendleft(job)
        return VideoOutcome(job.video.name, "retry", reason)

    @staticmethod
    def _attempts(job: Job) -> int:
        return max(job.attempts + job.deaths, 1)
