"""Training runs whose process died: a ``train`` killed mid-run leaves its MLflow run RUNNING forever.

Every run is tagged with the host name, pid and start time of the process
logging it. When the next ``train`` starts, a RUNNING run counts as dead only
when it was started on this same host and its process is gone: no process
has that pid any more, or it is a zombie, or the pid now belongs to a process
that started at another time (pids are reused). A run from another host is
never judged, since its process cannot be seen from here, and a long run is
not a dead one; nor is a run without these tags (logged by another tool).

A dead run is marked FAILED. A model version it registered that never
received an alias (the process died between registering and naming it
challenger) is tagged ``leadscore.incomplete``: it stays in the registry for
inspection, and nothing in leadscore ever aliases it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST_TAG, PID_TAG, STARTED_TAG = "leadscore.host", "leadscore.pid", "leadscore.process_started"
FAILURE_TAG = "leadscore.failure"
INCOMPLETE_TAG = "leadscore.incomplete"


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state first), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text.rpartition(")")[2].split()  # the command name before ")" may itself hold spaces


def _started(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields else ""  # field 22, starttime: clock ticks after boot


def process_tags() -> dict[str, str]:
    """Tags naming this process, given to every run at its creation."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: _started(os.getpid())}


def _alive(pid: int, started: str) -> bool:
    if Path("/proc/self/stat").exists():
        fields = _stat(pid)
        return fields is not None and fields[0] != "Z" and (not started or fields[19] == started)
    try:  # without /proc (macOS), existence is all that can be seen
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(tags: dict[str, str]) -> bool:
    """Whether the process that logs a RUNNING run with these tags is known to be gone (see the module's rule)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    return not _alive(int(tags[PID_TAG]), tags.get(STARTED_TAG, ""))


def fail_dead_runs(client, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of ``experiment_id`` whose process died; tag their unaliased versions."""
    dead = [run for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'") if is_dead(run.data.tags)]
    for run in dead:
        run_id, tags = run.info.run_id, run.data.tags
        client.set_tag(run_id, FAILURE_TAG, f"its process (pid {tags[PID_TAG]} on {tags[HOST_TAG]}) died before the run ended")
        client.set_terminated(run_id, "FAILED")
        for found in client.search_model_versions(f"run_id = '{run_id}'"):
            version = client.get_model_version(found.name, found.version)  # a search leaves aliases out
            if not version.aliases:
                client.set_model_version_tag(
                    version.name, version.version, INCOMPLETE_TAG,
                    f"run {run_id} died after registering this version: it never became challenger; do not promote it",
                )
    return [run.info.run_id for run in dead]
