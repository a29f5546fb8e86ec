"""The Ray runner's dispatch rules, driven without Ray: longest first, retries on another worker, failure after the
last retry, deaths, idle workers and completion."""

from __future__ import annotations

from pathlib import Path

from vidseg.datasets import DatasetVideo
from vidseg.runners.resumable import VideoOutcome
from vidseg.runners.scheduler import ACTOR_DEATHS_ALLOWED, Job, Scheduler


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make_scheduler(names: list[str], num_workers: int, retries: int) -> tuple[Scheduler, dict[str, Job], Clock]:
    """Jobs named ``names`` (already longest first, as the runner sorts them)."""
    jobs = {name: Job(DatasetVideo(name, Path(f"{name}.mp4"), None, (), None), position)
            for position, name in enumerate(names, 1)}
    clock = Clock()
    return Scheduler(list(jobs.values()), num_workers, retries, clock=clock), jobs, clock


def assigned(scheduler: Scheduler) -> list[tuple[int, str]]:
    return [(worker, job.video.name) for worker, job in scheduler.assign()]


def test_longest_first_one_job_per_idle_worker_until_every_video_is_done():
    scheduler, jobs, clock = make_scheduler(["long", "mid", "short"], num_workers=2, retries=0)
    assert assigned(scheduler) == [(0, "long"), (1, "mid")]
    assert assigned(scheduler) == []  # both workers busy: "short" waits
    clock.now = 103.0
    scheduler.on_model_done(0)  # "long" goes on to export and worker 0 is free again
    assert assigned(scheduler) == [(0, "short")]
    outcome = scheduler.on_export_done(jobs["long"], VideoOutcome("long", "done"))
    assert (outcome.status, outcome.seconds, outcome.attempts) == ("done", 3.0, 1)
    for worker in (1, 0):
        scheduler.on_model_done(worker)
    assert assigned(scheduler) == [] and not scheduler.finished  # idle workers, two exports in flight
    scheduler.on_export_done(jobs["mid"], VideoOutcome("mid", "done"))
    assert not scheduler.finished
    scheduler.on_export_done(jobs["short"], VideoOutcome("short", "done"))
    assert scheduler.finished and sorted(scheduler.idle) == [0, 1]


def test_a_retry_waits_for_a_worker_that_has_not_failed_it():
    scheduler, jobs, clock = make_scheduler(["bad", "good"], num_workers=2, retries=1)
    assert assigned(scheduler) == [(0, "bad"), (1, "good")]
    scheduler.on_model_done(0)
    assert scheduler.fail(jobs["bad"], 0, "cannot decode").status == "retry"
    assert assigned(scheduler) == []  # worker 0 failed it and worker 1 is busy
    scheduler.on_model_done(1)
    assert assigned(scheduler) == [(1, "bad")]
    clock.now = 107.5
    scheduler.on_model_done(1)
    failed = scheduler.fail(jobs["bad"], 1, "cannot decode", "Traceback ...")
    assert (failed.status, failed.reason, failed.attempts, failed.seconds, failed.traceback) == (
        "failed", "cannot decode", 2, 7.5, "Traceback ...")
    assert not scheduler.finished  # "good" is still in export
    scheduler.on_export_done(jobs["good"], VideoOutcome("good", "done"))
    assert scheduler.finished and not scheduler.queue


def test_a_video_goes_to_a_worker_that_has_failed_it_only_when_every_worker_has():
    scheduler, jobs, _ = make_scheduler(["a", "b"], num_workers=3, retries=3)
    jobs["a"].failed_on.update({0, 1})
    jobs["b"].failed_on.update({0, 1, 2})
    assert assigned(scheduler) == [(0, "b"), (2, "a")]  # b failed everywhere: any worker; a: worker 2 only
    assert scheduler.idle == [1]


def test_a_retried_video_goes_back_to_the_front_of_the_queue():
    scheduler, jobs, _ = make_scheduler(["a", "b", "c"], num_workers=1, retries=2)
    assert assigned(scheduler) == [(0, "a")]
    scheduler.on_model_done(0)
    scheduler.fail(jobs["a"], None, "the export worker failed", death=True)  # in export: no worker to avoid
    assert assigned(scheduler) == [(0, "a")]
    assert jobs["a"].deaths == 1 and jobs["a"].attempts == 0


def test_deaths_do_not_spend_retries_but_too_many_fail_the_video():
    scheduler, jobs, _ = make_scheduler(["oom"], num_workers=1, retries=0)
    outcomes = []
    for _ in range(ACTOR_DEATHS_ALLOWED + 1):
        assert assigned(scheduler) == [(0, "oom")]  # a replaced worker keeps its number and may retake it
        scheduler.on_model_done(0)
        outcomes.append(scheduler.fail(jobs["oom"], 0, "the model actor died", death=True))
    assert [o.status for o in outcomes] == ["retry"] * ACTOR_DEATHS_ALLOWED + ["failed"]
    assert outcomes[-1].attempts == ACTOR_DEATHS_ALLOWED + 1
    assert scheduler.finished


def test_a_retried_success_counts_every_attempt():
    scheduler, jobs, _ = make_scheduler(["flaky"], num_workers=1, retries=2)
    scheduler.assign()
    scheduler.on_model_done(0)
    scheduler.fail(jobs["flaky"], None, "disk hiccup")
    scheduler.assign()
    scheduler.on_model_done(0)
    done = scheduler.on_export_done(jobs["flaky"], VideoOutcome("flaky", "done"))
    assert done.attempts == 2 and scheduler.finished
