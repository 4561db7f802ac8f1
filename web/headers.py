"""The headers every answer carries so a browser treats it as data, never as a page.

An API answer (JSON) is not to be sniffed as another type, framed, cached or given a referrer,
and must run nothing if a browser opens it: ``nosniff``, a ``Content-Security-Policy`` of
``default-src 'none'``, ``Cache-Control: no-store`` (tokens and users are in some answers).
The offline docs page and its assets keep their own type and only get the first and the frame
rule. Both the full path (:func:`add_security_headers`, an after-request hook) and the direct
path (:data:`JSON_HEADERS`, precomputed) send the same.
"""

from __future__ import annotations

from quart import Response

__all__ = ["EVERY_ANSWER", "JSON_ANSWER", "JSON_HEADERS", "add_security_headers"]

EVERY_ANSWER: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
"""Headers of every answer, the docs page included."""

JSON_ANSWER: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("Cache-Control", "no-store"),
)
"""Headers of every JSON answer besides :data:`EVERY_ANSWER`."""

JSON_HEADERS: list[tuple[bytes, bytes]] = [
    (name.lower().encode("latin1"), value.encode("latin1")) for name, value in (*EVERY_ANSWER, *JSON_ANSWER)
]
"""All of them as ASGI headers, for an answer sent without Quart."""


async def add_security_headers(response: Response) -> Response:
    """Quart's after-request hook: the headers of :data:`EVERY_ANSWER`, and of
    :data:`JSON_ANSWER` when the answer is JSON (a header the view set is kept)."""
    headers = response.headers
    for name, value in EVERY_ANSWER:
        headers.setdefault(name, value)
    if response.mimetype == "application/json":
        for name, value in JSON_ANSWER:
            headers.setdefault(name, value)
    return response
