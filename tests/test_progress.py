"""Long work shows progress: bars on a terminal, plain lines in a pipe or a log."""

from __future__ import annotations

import io
import time

from rich.console import Console

from leadscore.progress import LineProgress, RichProgress, for_console


def test_plain_lines_say_when_a_task_starts_how_it_goes_and_when_it_ends():
    lines: list[str] = []
    with LineProgress(lines.append, heartbeat=0.05) as progress:
        with progress.task("Choosing the model", total=7) as advance:
            advance(2)
            time.sleep(0.18)
    assert lines[0] == "Choosing the model (0/7)..."
    beats = [line for line in lines[1:-1]]
    assert beats and all(line.startswith("Choosing the model: 2/7, ") and line.endswith("so far") for line in beats)
    assert lines[-1].startswith("Choosing the model: done in ")


def test_a_failed_task_does_not_claim_it_is_done():
    lines: list[str] = []
    progress = LineProgress(lines.append, heartbeat=10)
    try:
        with progress.task("Writing leads", total=3):
            raise RuntimeError("disk gone")
    except RuntimeError:
        pass
    assert lines == ["Writing leads (0/3)..."]


def test_a_terminal_gets_bars_and_a_pipe_gets_lines():
    assert isinstance(for_console(Console(file=io.StringIO(), force_terminal=True)), RichProgress)
    piped = Console(file=io.StringIO(), force_terminal=False)
    progress = for_console(piped)
    assert isinstance(progress, LineProgress)
    with progress.task("Reading leads [/b]", total=3) as advance:  # user text is never read as markup
        advance(3)
    assert "Reading leads [/b] (0/3)..." in piped.file.getvalue()
