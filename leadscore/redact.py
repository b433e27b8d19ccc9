"""Keeping passwords out of everything leadscore prints.

Database and MLflow URIs carry credentials (``postgresql://user:secret@host/db``,
``https://user:token@mlflow.example.com``). Every URI leadscore shows goes
through ``masked_url``, and every message a command prints goes through
``redact``, which masks any URI it finds.

Passwords are not always percent-encoded: ``postgresql://app:p@ss@db/crm``
is a common mistake, and SQLAlchemy itself then reads the host as
``ss@db``. The userinfo part of a URI therefore ends at the *last* ``@``
before its query string, not the first.
"""

from __future__ import annotations

import re

MASK = "***"
# Query parameters that carry credentials (libpq's password=, OAuth tokens...).
SECRET_PARAMETER = re.compile(
    r"(?i)\b((?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey|sslpassword)=)[^&\s'\"]*"
)
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*")


def masked_url(url: str) -> str:
    """``url`` with its password and secret query parameters replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    query_at = rest.find("?")
    head_end = query_at if query_at >= 0 else len(rest)
    at = rest.rfind("@", 0, head_end)
    if at < 0 and "@" in rest[head_end:]:
        # A raw '?' inside the password: the userinfo still ends at the last '@'.
        candidate = rest.rfind("@")
        if ":" in rest[:candidate] and "/" not in rest[:candidate]:
            at = candidate
    if at >= 0 and not rest.startswith("/"):
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{MASK}@{rest[at + 1:]}"
    head, mark, query = rest.partition("?")
    if "://" in query:  # a URL given as a parameter of another (tryton://...?scores=postgresql://...)
        rest = head + mark + URI.sub(lambda match: masked_url(match.group(0)), query)
    return scheme + separator + SECRET_PARAMETER.sub(rf"\1{MASK}", rest)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every URI's credentials masked and each of ``secrets`` replaced by ``***``.

    ``secrets`` are literal values known to be sensitive (the passwords of the
    URIs a command was given), caught even where a library quoted them
    without their URI, e.g. in a host name it could not resolve.
    """
    text = URI.sub(lambda match: masked_url(match.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password of ``url`` and every fragment of it a parser might quote on its own."""
    if not url or "://" not in url:
        return ()
    masked = masked_url(url)
    if masked == url:
        return ()
    rest = url.partition("://")[2]
    head, _, query = rest.partition("?")
    if "@" not in head and "://" in query:
        # No credentials of its own (a tryton:// file path): only those of the URLs among its parameters.
        return tuple(sorted({secret for nested in URI.findall(query) for secret in url_secrets(nested)},
                            key=len, reverse=True))
    query_at = rest.find("?")
    head_end = query_at if query_at >= 0 else len(rest)
    at = rest.rfind("@", 0, head_end)
    if at < 0:
        at = rest.rfind("@")
    password = rest[:at].partition(":")[2] if at >= 0 else ""
    values = [password, *password.split("@")] if password else []
    # SQLAlchemy ends the password at its first '@' and reads the rest as the host: "ss@db".
    values += [password[index + 1:] + "@" for index, char in enumerate(password) if char == "@"]
    values += [match.group(0).split("=", 1)[1] for match in SECRET_PARAMETER.finditer(rest)]
    # Short fragments ("p" of "p@ss") would blank out ordinary words; URIs are masked whole anyway.
    return tuple(sorted({value for value in values if len(value) >= 4 or value.endswith("@")}, key=len, reverse=True))
