"""Database URLs as messages show them: never with a password."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def hide_password(url: str) -> str:
    """`url` with its password (in the user part or the query) shown as ***, for messages."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query)
    if parts.password is None and all(k != "password" for k, _ in pairs):
        return url  # as given: re-joining would turn sqlite:////abs/path into sqlite://abs/path
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
