"""Tryton on PostgreSQL: the Tryton tests again, on Tryton databases in the PostgreSQL server.

trytond picks its database backend once per process, from its configuration, so they cannot share this process
with the SQLite run of ``tests/test_tryton.py``: they run in a pytest process of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.postgres
def test_the_tryton_round_trip_passes_on_postgresql(postgres_server):
    module = Path(__file__).with_name("test_tryton.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(module)],
        env={**os.environ, "LEADSCORE_TRYTON_BACKEND": "postgresql", "LEADSCORE_TEST_POSTGRES": postgres_server},
        capture_output=True, text=True, timeout=1_200,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "deselected" not in summary, summary
