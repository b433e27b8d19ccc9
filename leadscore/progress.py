"""Progress reporting for long work, kept out of the code that does the work.

Pipelines take a ``Progress`` and open one task per phase; the CLI passes a
``RichProgress`` that draws bars, tests and notebooks keep the silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[float], None]


class Progress:
    """Reports nothing: the default for library calls."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Advance]:
        yield lambda amount=1: None


class RichProgress(Progress):
    """Draws one bar per task on the terminal, with elapsed time."""

    def __init__(self, console=None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeElapsedColumn

        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
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
