"""Talking to a CRM's web API: a client holding the access token, waits on 429 and 503, errors without secrets.

The token travels in the ``Authorization`` header only, and no message here quotes a header or a request, so
it cannot reach the output; the CLI also masks the tokens it was given in every message it prints.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from leadscore.errors import LeadscoreError

WAITED_STATUSES = (429, 503)  # too many requests; unavailable for now


@dataclass(frozen=True)
class Waits:
    """How long to wait when a CRM answers 429 (or 503): its ``Retry-After``, a bounded number of times.

    ``longest``: a ``Retry-After`` beyond this is not waited for (a daily limit, say); the export stops and the
    next one resumes. ``default``: the wait when a 429 names none (HubSpot's burst window is ten seconds).
    ``sleep`` is injectable so that tests do not sleep.
    """

    attempts: int = 6
    longest: float = 120.0
    default: float = 10.0
    sleep: Callable[[float], None] = time.sleep


def open_client(base_url: str, token: str, transport: httpx.BaseTransport | None = None,
                timeout: float = 120.0) -> httpx.Client:
    """An HTTP client for ``base_url`` that sends ``token`` as a bearer token with every request."""
    return httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                        transport=transport, timeout=timeout, follow_redirects=False)


def request(client: httpx.Client, service: str, method: str, url: str, waits: Waits, **kwargs) -> httpx.Response:
    """Send one request, waiting out 429 and 503 answers; the last answer when waiting did not help.

    A request that cannot reach the service is a ``LeadscoreError`` naming it.
    """
    for attempt in range(1, waits.attempts + 1):
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as error:
            raise LeadscoreError(
                f"Could not reach {service} at {client.base_url}: {type(error).__name__}: {error}. Check the address "
                "and the network; rows already sent are recorded, the others go with the next export."
            ) from None
        if response.status_code not in WAITED_STATUSES or attempt == waits.attempts:
            return response
        wait = retry_after(response, waits.default)
        if wait > waits.longest:
            return response
        waits.sleep(wait)
    raise AssertionError("unreachable: the loop returns on its last attempt")


def retry_after(response: httpx.Response, default: float) -> float:
    """Seconds the answer asks to wait: ``Retry-After`` in seconds or as an HTTP date, else ``default``."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def short(text: str, limit: int = 500) -> str:
    """A CRM's answer, cut for a message."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
