"""Worker processes for CPU-bound stages (refinement), kept across calls and stopped cleanly however a run ends.

Why not ``concurrent.futures.ProcessPoolExecutor``: its queues are pipes whose both ends the parent holds, fed and
read by background threads. Stopping a run means terminating workers mid-task; one killed halfway through writing
a result leaves the executor's thread reading a message that never completes (the parent's own write end keeps the
pipe open), and the interpreter's exit joins that thread: ``vidseg predict`` hung on some SIGTERMs (1 in 16 in one
trial; ``tests/test_stopping.py`` makes it likely).

Here each worker has a pipe of its own, the parent holds only its end, and only the calling thread uses it: a dead
worker reads as end-of-file at once, and stopping is terminate and join. Nothing here imports torch or OpenCV, so
the CLI's exit path can stop the pool of any run cheaply.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

STOP_TIMEOUT_S = 5.0  # how long a terminated worker may take to exit before it is killed
_END = object()


class WorkerError(RuntimeError):
    """A worker process died (e.g. killed for memory) with a job in flight; the pool starts fresh ones."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as its ``__cause__``."""

    def __str__(self) -> str:
        return str(self.args[0])


class WorkerPool:
    """Processes that run ``task(*job)`` for the jobs of ``imap``, started at the first call and kept for later
    ones (the pipeline refines a chunk of frames per call).

    Workers are forked from a fork server that has imported ``preload`` (spawned where there is none), never from
    the caller: a forked copy of a process that has used OpenCV's or torch's thread pools can deadlock. As with any
    spawned worker, a script that uses the pool needs an ``if __name__ == "__main__":`` guard.

    Args:
        preload: modules the fork server imports once, so each worker starts with them (the tasks' modules).
        initializer: run in each worker before its first job (picklable: a module-level function).
    """

    def __init__(self, preload: Sequence[str] = (), initializer: Callable[[], None] | None = None):
        self.preload = list(preload)
        self.initializer = initializer
        self._workers: list[_Worker] = []
        self._busy: set[_Worker] = set()  # workers holding a job whose result has not been read
        self._warned_inline = False

    def imap(self, task: Callable[..., Any], jobs: Iterable[tuple], num_workers: int) -> Iterator[Any]:
        """Results of ``task(*job)`` in job order; in worker processes when ``num_workers > 1``, one job per worker
        at a time, taken from ``jobs`` as workers free up (so a generator of jobs overlaps with the workers).

        An exception of a job is raised here (with the worker's traceback as its cause). Stopping early (an
        exception, ``close()``, Ctrl-C) ends the workers that still hold a job, so no stale result is left for
        the next call. One call at a time: the CLI and the demo refine one video at a time.
        """
        if num_workers == 1 or not self._can_start():
            yield from (task(*job) for job in jobs)
            return
        workers = self._resize(num_workers)
        idle = list(reversed(workers))
        busy: dict[_Worker, int] = {}  # worker -> index of its job
        done: dict[int, Any] = {}  # results not yet yielded, by job index
        pending = iter(jobs)
        sent = yielded = 0
        more = True
        try:
            while True:
                while more and idle:
                    job = next(pending, _END)
                    if job is _END:
                        more = False
                        break
                    worker = idle.pop()
                    busy[worker] = sent  # before sending: a send cut short by a signal leaves the worker busy
                    self._busy.add(worker)
                    worker.send((task, job))
                    sent += 1
                if yielded in done:
                    yield done.pop(yielded)
                    yielded += 1
                    continue
                if not busy:
                    return
                for connection in wait([w.connection for w in busy]):
                    worker = next(w for w in busy if w.connection is connection)
                    done[busy[worker]] = worker.receive()
                    del busy[worker]  # after receiving: a receive cut short leaves the worker busy
                    self._busy.discard(worker)
                    idle.append(worker)
        finally:
            if busy:
                self._discard(list(busy))

    def stop(self) -> None:
        """End this pool's processes now, mid-task if need be (their results are not wanted)."""
        self._discard(list(self._workers))

    def _resize(self, num_workers: int) -> list[_Worker]:
        # Workers still busy for an earlier call that was abandoned, not closed (a frame kept alive by a traceback):
        # their next reply would be that call's result.
        self._discard([w for w in self._workers if w in self._busy])
        if len(self._workers) > num_workers:
            self._discard(self._workers[num_workers:])
        if len(self._workers) < num_workers:
            _STARTED.add(self)  # first: a stop that interrupts the start still finds the workers already started
            context = _context(self.preload)
            self._workers.extend(_Worker(context, self.initializer) for _ in range(num_workers - len(self._workers)))
        return list(self._workers)

    def _discard(self, workers: list[_Worker]) -> None:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()
            self._busy.discard(worker)
            if worker in self._workers:  # a suspended imap may discard its workers after a stop
                self._workers.remove(worker)
        if not self._workers:
            _STARTED.discard(self)

    def _can_start(self) -> bool:
        """Spawned workers re-import the caller's main script; a script read from stdin cannot be, so such callers
        run in this process (warned once)."""
        main_path = getattr(sys.modules.get("__main__"), "__file__", None)
        if main_path is None or os.path.exists(main_path):
            return True
        if not self._warned_inline:
            warnings.warn(f"the main script {main_path!r} is not a file, so refinement runs in this process; "
                          f"run a script file to use worker processes", stacklevel=4)
            self._warned_inline = True
        return False


_STARTED: set[WorkerPool] = set()  # pools with processes running: what ``stop_workers`` ends


def stop_workers() -> None:
    """End the processes of every pool of this process that has started some (the run is being stopped, or is
    over); a no-op when none was ever started."""
    for pool in list(_STARTED):
        pool.stop()


def _context(preload: Sequence[str]) -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, initializer: Callable[[], None] | None):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid(), initializer), daemon=True,
                                       name="vidseg-worker")
        self.process.start()
        child.close()  # the worker holds the only other end: its death reads as end-of-file here

    def send(self, message: Any) -> None:
        try:
            self.connection.send(message)
        except OSError:  # broken pipe: the worker is gone
            raise WorkerError("a worker process died; it is replaced at the next call") from None

    def receive(self) -> Any:
        try:
            ok, value, trace = self.connection.recv()
        except (EOFError, OSError):
            raise WorkerError(f"a worker process died (exit code {self.process.exitcode}), e.g. killed for "
                              f"memory (fewer workers need less)") from None
        if not ok:
            raise value from RemoteTraceback(trace)
        return value

    def terminate(self) -> None:
        self.connection.close()
        if self.process.is_alive():
            self.process.terminate()

    def join(self) -> None:
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _serve(connection: Connection, parent_pid: int, initializer: Callable[[], None] | None) -> None:
    """A worker's life: jobs from ``connection`` until the parent closes it (or ends the worker)."""
    # Ctrl-C reaches the whole process group; the parent decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="vidseg-watchdog").start()
    if initializer is not None:
        initializer()
    while True:
        try:
            task, job = connection.recv()
        except EOFError:
            return
        try:
            reply = (True, task(*job), None)
        except Exception as exc:  # raised in the parent, with this traceback
            reply = (False, exc, traceback.format_exc())
        try:
            connection.send(reply)
        except OSError:  # the parent is gone
            return
        except Exception as exc:  # a result or exception that cannot be pickled (nothing was written yet)
            connection.send((False, RuntimeError(f"a worker's reply cannot be sent: {exc}"), traceback.format_exc()))


def _watch_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """End the worker when the process that started it is gone, however it ended (even by SIGKILL), so no worker
    outlives its run burning CPU (a job in progress would otherwise run to its end)."""
    from vidseg.files import process_alive

    while process_alive(parent_pid):
        time.sleep(interval_s)
    os._exit(1)
