"""Passwords never print: URIs are masked, raw '@' and '?' in passwords included."""

from __future__ import annotations

import pytest

from leadscore.redact import masked_url, redact, url_secrets


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://app:secret@db:5432/crm", "postgresql://app:***@db:5432/crm"),
        ("postgresql://app:p@ss@db/crm", "postgresql://app:***@db/crm"),
        ("postgresql://app:p@ss@db/crm?sslmode=require", "postgresql://app:***@db/crm?sslmode=require"),
        ("postgresql://app:pa?ss@db/crm", "postgresql://app:***@db/crm"),
        ("postgresql://app:p/w@db/crm", "postgresql://app:***@db/crm"),
        ("https://me:token123@mlflow.example.com", "https://me:***@mlflow.example.com"),
        ("postgresql://db/crm?user=app&password=secret", "postgresql://db/crm?user=app&password=***"),
        ("postgresql://app@db/crm", "postgresql://app@db/crm"),
        ("sqlite:////home/me@work/crm.db", "sqlite:////home/me@work/crm.db"),
        ("crm.db", "crm.db"),
    ],
)
def test_masked_url_hides_the_password_and_nothing_else(url, shown):
    assert masked_url(url) == shown


def test_redact_masks_every_uri_in_a_message_and_known_fragments():
    url = "postgresql://app:p@ssword@db/crm"
    message = f"Cannot open {url}: could not translate host name \"ssword@db\" to address"
    cleaned = redact(message, url_secrets(url))
    assert "ssword" not in cleaned and "p@ss" not in cleaned
    assert "postgresql://app:***@db/crm" in cleaned


def test_short_fragments_are_not_blanked_out_of_ordinary_words():
    secrets = url_secrets("postgresql://app:p@ss@db/crm")
    assert "p" not in secrets and "ss" not in secrets
    assert redact("pass the session", secrets) == "pass the session"
    assert redact('host name "ss@db"', secrets) == 'host name "***db"'
