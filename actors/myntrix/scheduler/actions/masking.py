"""Secrets in task parameters: which names look secret, and masking them for the wire and back.

Header values (``Authorization``, cookies, API keys), ``env`` values and URL parts (password,
query values) whose names look secret are never written to a log, and each kind's
:meth:`~actors.myntrix.scheduler.actions.action.ActionParameters.masked` replaces them with
:data:`MASK`. A client that sends a task back unchanged sends :data:`MASK`; the kind's
:meth:`~actors.myntrix.scheduler.actions.action.ActionParameters.unmasked` (called by
:meth:`~actors.myntrix.scheduler.actions.registry.ActionRegistry.validate` given the
``previous`` parameters) puts the stored secret back in its place with :func:`unmask_url` and
:func:`unmask_map`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

__all__ = ["MASK", "looks_secret", "mask_map", "mask_url", "unmask_map", "unmask_url"]

MASK = "********"
"""What a secret value is replaced with on the wire."""

_SECRET_WORDS = ("auth", "token", "secret", "password", "passwd", "pwd", "key", "cookie", "session", "signature", "credential")


def looks_secret(name: str) -> bool:
    """Whether a header, variable or query parameter named ``name`` probably holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask_map(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with those under secret-looking names (headers, variables) replaced by :data:`MASK`."""
    return {name: MASK if looks_secret(name) else value for name, value in values.items()}


def mask_url(url: str) -> str:
    """``url`` with its password and the values of secret-looking query parameters masked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(looks_secret(name) for name, _ in pairs):
            query = urllib.parse.urlencode(
                [(name, MASK if looks_secret(name) else value) for name, value in pairs], safe="*"
            )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def unmask_url(url: str, previous: str) -> str:
    """``previous`` when ``url`` is its masked form sent back, else ``url`` as sent."""
    if MASK not in url or mask_url(previous) != url:
        return url  # changed by the client (or never masked): take it as sent
    return previous


def unmask_map(new: Mapping[str, str], old: Mapping[str, str], *, fold: bool) -> dict[str, str]:
    """``new`` with each :data:`MASK` under a secret-looking name replaced by ``old``'s value of
    that name (names compared case-insensitively with ``fold``, as HTTP headers are)."""
    key = (lambda name: name.lower()) if fold else (lambda name: name)
    stored = {key(name): value for name, value in old.items()}
    return {
        name: stored[key(name)] if value == MASK and looks_secret(name) and key(name) in stored else value
        for name, value in new.items()
    }
