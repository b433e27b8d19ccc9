"""Atomic writes: a failed write leaves the old file as it was and no debris; disk errors are user errors."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.files import atomic_path, write_table, write_text


def _debris(folder):
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


def test_a_write_replaces_the_file_whole_with_ordinary_permissions(tmp_path):
    target = tmp_path / "scores.csv"
    write_table(pd.DataFrame({"id": [1, 2], "p": [0.1, 0.2]}), target)
    assert pd.read_csv(target)["id"].tolist() == [1, 2]
    assert stat.S_IMODE(target.stat().st_mode) & 0o644 == 0o644  # not mkstemp's 0600
    os.chmod(target, 0o640)
    write_table(pd.DataFrame({"id": [3], "p": [0.3]}), target)
    assert pd.read_csv(target)["id"].tolist() == [3]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _debris(tmp_path) == []


def test_a_failure_midway_keeps_the_old_file_and_leaves_no_debris(tmp_path):
    target = tmp_path / "report.html"
    write_text(target, "the old report")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half a rep")
            raise RuntimeError("killed")
    assert target.read_text() == "the old report"
    assert _debris(tmp_path) == []


@pytest.mark.parametrize(
    "code, phrase",
    [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied"), (errno.EFBIG, "largest size")],
)
def test_os_errors_become_one_message_saying_the_old_file_is_unchanged(tmp_path, code, phrase):
    target = tmp_path / "features.parquet"
    write_text(target, "old")
    with pytest.raises(LeadscoreError, match=phrase) as raised:
        with atomic_path(target):
            raise OSError(code, os.strerror(code))
    assert "the existing file is unchanged" in str(raised.value)
    assert target.read_text() == "old" and _debris(tmp_path) == []


def test_a_file_size_limit_hit_by_a_real_write_leaves_the_old_file(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse the write itself (EFBIG), as a full disk would (ENOSPC).
    target = tmp_path / "scores.csv"
    write_text(target, "id,probability\n" + "".join(f"{i},0.5\n" for i in range(200)))
    before = target.read_text()
    script = (
        "import resource, signal, pandas as pd\n"
        "from leadscore.files import write_table\n"
        "from leadscore.errors import LeadscoreError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        f"    write_table(pd.DataFrame({{'id': range(100000), 'p': 0.5}}), {str(target)!r})\n"
        "except LeadscoreError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "the existing file is unchanged" in done.stdout, done.stdout + done.stderr
    assert target.read_text() == before
    assert _debris(tmp_path) == []


def test_a_missing_folder_or_a_folder_as_destination_is_refused(tmp_path):
    with pytest.raises(LeadscoreError, match="does not exist"):
        write_text(tmp_path / "nope" / "x.html", "x")
    with pytest.raises(LeadscoreError, match="that is a folder"):
        write_text(tmp_path, "x")
    with pytest.raises(LeadscoreError, match=".csv or .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")
