"""Settings read from the environment, once, at the edge."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRM_URL = "sqlite:///leadscore.db"


def shared_data_dir() -> Path:
    """Folder of the public datasets: ``LEADSCORE_SHARED_DATA``, else ``../shared/data`` beside the project."""
    configured = os.environ.get("LEADSCORE_SHARED_DATA")
    return Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"


def crm_url_from_env() -> str:
    """The CRM to use when no ``--crm`` is given: ``LEADSCORE_CRM``, else an SQLite file in the working directory."""
    return os.environ.get("LEADSCORE_CRM", DEFAULT_CRM_URL)


def configured_crm_url() -> str | None:
    """``LEADSCORE_CRM`` when it is set: for commands where a CRM is optional."""
    return os.environ.get("LEADSCORE_CRM") or None


DEFAULT_CURRENCY = "USD"


def configured_currency() -> str:
    """The currency every cost is shown in: ``LEADSCORE_CURRENCY``, else US dollars (the CRM stores bare amounts)."""
    return (os.environ.get("LEADSCORE_CURRENCY") or DEFAULT_CURRENCY).strip()
