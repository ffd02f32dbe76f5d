"""Dataset URLs as they may be shown: without user info or query-string values.

Pure and deterministic (no I/O), so the workflow can use it for its state and memo while the
activity that fetches the file still receives the URL with its credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
UNPARSEABLE = "<unparseable URL>"


def redact_dataset_url(url: str) -> str:
    """`url` with `user:password@` shown as `***@` and every query value as `***`.

    Scheme, host, port and path stay, so a person can still tell which file was meant. Every
    query value goes, not only the well-known names: signed URLs (S3, GCS, Azure SAS) put their
    credentials in parameters of many names. The fragment goes too (OAuth implicit flows carry
    tokens there, and servers never see it). A local path or `upload://` reference has none of
    these and comes back unchanged.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return UNPARSEABLE
    netloc = parts.netloc
    if "@" in netloc:
        # rpartition: an unescaped "@" inside a password must not leave half of it behind.
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_query(parts.query), ""))


def _redact_query(query: str) -> str:
    items = []
    for item in query.split("&"):
        if not item:
            continue
        key, separator, _ = item.partition("=")
        # A bare item ("?AbC123") may itself be the token.
        items.append(f"{key}={REDACTED}" if separator else REDACTED)
    return "&".join(items)
