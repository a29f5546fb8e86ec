"""The typer app every subcommand registers on, and the error handling they share.

Library errors (``VidsegError``) become one ``error: ...`` line on stderr and the error's exit code; Ctrl-C, SIGTERM
and SIGHUP stop the run cleanly and exit with 128 + the signal number (130, 143, 129). ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from vidseg.cli.progress import console
from vidseg.errors import VidsegError

app = typer.Typer(
    name="vidseg",
    help="Segment real videos by class name with no training, from a video diffusion transformer's own attention "
         "(IMAP / GramCol on CogVideoX and Wan2.1). Exit codes: 0 done, 1 a failure while running, 2 bad input or "
         "settings (nothing was started), 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (temporary folders removed, background work cancelled)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
RESEND_DELAY_S = 0.05  # after a stop that a finalizer swallowed, when the signal is sent again


_received: list[int] = []  # stop signals seen in this process, for commands that report a stop themselves


def _raise_stopped(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Stopped(signum)


def interrupt_exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal number: 143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C (SIGINT)."""
    if isinstance(exc, Stopped):
        return 128 + exc.signum
    return 128 + (_received[-1] if _received and exc is None else signal.SIGINT)


def _resend_swallowed_stops(previous_hook: Callable[[Any], None], unraisable: Any) -> None:
    """A ``sys.unraisablehook``. A signal that arrives while Python runs a finalizer (a ``__del__``, e.g. decord's
    frame buffers, or a weakref callback) raises its stop there, where no exception can propagate: Python prints
    and drops it, and the run would go on. Send the signal again a moment later, from another thread, so that its
    handler runs in ordinary code."""
    stop = unraisable.exc_value
    if not isinstance(stop, KeyboardInterrupt):
        previous_hook(unraisable)
        return
    signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
    timer = threading.Timer(RESEND_DELAY_S, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (schedulers stopping a job) behave like Ctrl-C, and none of these
    is lost to a finalizer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_resend_swallowed_stops, previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line and an exit code; keep tracebacks for bugs. Ctrl-C, SIGTERM and SIGHUP
    stop the command cleanly: worker processes end, temporary folders go, exit code 128 + the signal."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        _received.clear()
        try:
            with stop_on_signals():
                return command(*args, **kwargs)
        except VidsegError as exc:
            if debug:
                raise
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            how = f"stopped by {exc}" if isinstance(exc, Stopped) else "interrupted"
            console.print(f"[bold red]{how}[/]: nothing half-written was left behind")
            raise typer.Exit(interrupt_exit_code(exc)) from None
        finally:
            # A run leaves no worker process behind, whatever ends it; only a run that loaded the pool can have one.
            workers = sys.modules.get("vidseg.workers")
            if workers is not None:
                workers.stop_workers()

    return wrapper


def split_class_names(values: Optional[list[str]]) -> list[str]:
    """Class names from repeated ``--classes`` values, each of which may also be comma-separated."""
    names: list[str] = []
    for value in values or []:
        names.extend(value.split(",") if "," in value else [value])
    return names


def check_videos(videos: list[Any], video: Any) -> None:
    """Open every video as the ``video`` settings read it (one clear line for a missing or unreadable one, or one
    with no frame in their time range) and refuse two that would write the same ``OUT/<stem>/``: what the per-video
    commands check before loading a model."""
    from vidseg.errors import ConfigError
    from vidseg.video.read import open_video

    for path in videos:
        open_video(path, reader=video.reader, frame_folder_fps=video.frame_folder_fps, start=video.start,
                   end=video.end).close()
    stems = [v.stem for v in videos]
    if len(set(stems)) != len(stems):
        raise ConfigError("two videos share a file name; their outputs would collide in OUT/<stem>/")


def dataset_event_printer() -> Callable[[Any], None]:
    """``on_event`` for the resumable runners: a line per finished item (done, skipped, retried, failed, with the
    reason and the rate of items done per hour)."""
    import time

    started, finished = time.perf_counter(), 0

    def on_event(event: Any) -> None:
        nonlocal finished
        if event.outcome is None:
            return
        status = {"done": "green", "skipped": "cyan", "retry": "yellow"}.get(event.outcome.status, "red")
        reason = f": {event.outcome.reason}" if event.outcome.reason and event.outcome.status != "done" else ""
        rate = ""
        if event.outcome.status == "done":
            finished += 1
            rate = f", {finished / (time.perf_counter() - started) * 3600:.0f} videos/h"
        console.print(f"[{status}]{event.outcome.status}[/] {escape(event.video.name)} "
                      f"({event.position}/{event.total}{rate}){escape(reason)}", highlight=False)

    return on_event


def end_dataset_run(summary: Any) -> None:
    """Print a runner's summary; exit 128 + the signal if it was stopped, 1 if an item failed."""
    for line in summary.lines():
        console.print(line, highlight=False, markup=False)
    if summary.interrupted:
        raise typer.Exit(interrupt_exit_code())
    if summary.with_status("failed"):
        raise typer.Exit(1)

