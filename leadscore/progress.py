"""Progress reporting for long work, kept out of the code that does the work.

Pipelines take a ``Progress`` and open one task per phase; the CLI passes
``for_console(console)``: bars on a terminal, plain lines in a log or a pipe
(a redrawn bar there is either nothing or noise), and the tests and notebooks
keep the silent default.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[float], None]
HEARTBEAT_SECONDS = 30.0  # a plain-line task that runs longer says so this often, so a log never looks stuck


class Progress:
    """Reports nothing: the default for library calls."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Advance]:
        yield lambda amount=1: None


def for_console(console) -> Progress:
    """Bars when ``console`` is a terminal, plain lines otherwise."""
    if console.is_terminal:
        return RichProgress(console)
    return LineProgress(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))


class RichProgress(Progress):
    """Draws one bar per task on the terminal, with elapsed time."""

    def __init__(self, console=None) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, ProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                return Text(f"{task.speed:,.0f}/s" if task.speed and task.total and task.total > 10 else "")

        self._bars = Bars(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._bars.stop()

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Advance]:
        task_id = self._bars.add_task(description, total=total)
        try:
            yield lambda amount=1: self._bars.advance(task_id, amount)
        finally:
            if total is not None:
                self._bars.update(task_id, completed=total)
            else:
                self._bars.update(task_id, total=1, completed=1)


class LineProgress(Progress):
    """One line when a task starts, one when it ends, and one every ``heartbeat`` seconds in between."""

    def __init__(self, write: Callable[[str], None] = print, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._write = write
        self._heartbeat = heartbeat

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Advance]:
        began = time.perf_counter()
        done = [0.0]
        sized = f" (0/{_count(total)})" if total else ""
        self._write(f"{description}{sized}...")
        finished = threading.Event()

        def beat() -> None:
            while not finished.wait(self._heartbeat):
                elapsed = time.perf_counter() - began
                so_far = f"{_count(done[0])}/{_count(total)}, " if total else ""
                if total and done[0] and total > 10:
                    rate = done[0] / elapsed
                    so_far += f"{_count(rate)}/s, about {_duration((total - done[0]) / rate)} left, "
                self._write(f"{description}: {so_far}{_duration(elapsed)} so far")

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            yield lambda amount=1: done.__setitem__(0, done[0] + amount)
        finally:
            finished.set()
            ticker.join()
        self._write(f"{description}: done in {_duration(time.perf_counter() - began)}")


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"
