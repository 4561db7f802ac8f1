"""The ``api`` task action: one HTTP request with httpx.

Parameters: ``method``, ``url`` (http/https only), ``headers``, ``body`` (a string is sent as
text, anything else as JSON), ``expectedStatus`` (one code or a list; any 2xx when absent),
``timeout``. The status and the first :data:`BODY_LOG_LIMIT` bytes of the response body go to
the log. A connection error or a timeout is a failed outcome with the reason. Redirects are not
followed (a 3xx is the answer: a task should name the URL it means, and a redirect must not carry
its headers elsewhere, nor lead past the outbound rule). Secret-looking header values and URL
parts are masked in the log and on the wire.

The URL is an outbound destination (:mod:`drivers.outbound`, decision 0024): checked when the
task is defined, and again by the connection of each run, which goes only to an address the
check passed; an internal one (loopback, private, link-local...) not in ``[outbound] allow``
fails the run unless the task's creator is an admin. The body in the log is shown only to the
task's creator and admins (the web front hides it from others).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import trio
from pydantic import BaseModel, Field, field_validator

from drivers.errors import OutboundRefusedError

from .action import ActionContext, ActionOutcome, ActionParameters, BaseAction
from .masking import mask_map, mask_url, unmask_map, unmask_url

__all__ = ["BODY_LOG_LIMIT", "ApiAction", "ApiParameters"]

BODY_LOG_LIMIT = 4096
"""Bytes of an ``api`` response body copied to the run's log."""

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_JsonBody = dict[str, Any] | list[Any] | str | int | float | bool | None


class ApiParameters(ActionParameters):
    """``api``: one HTTP request."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="The HTTP method."
    )
    url: str = Field(max_length=8192, repr=False, description="An http:// or https:// URL.", examples=["https://example.com/hook"])
    headers: dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=8192)]] = Field(
        default_factory=dict,
        repr=False,
        description="Request headers; values of secret-looking ones (Authorization, API keys) are masked when shown.",
    )
    body: _JsonBody = Field(None, description="A string is sent as text; anything else as JSON.")
    expected_status: int | list[int] | None = Field(
        None, description="The status (or statuses) that mean success; any 2xx when absent."
    )
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds the whole request may take.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"must be an http:// or https:// URL, not {mask_url(value)!r}")
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError as exc:
            raise ValueError(f"is not a valid URL ({exc}): {mask_url(value)!r}") from None
        if not host:
            raise ValueError(f"must name a host, as in https://example.com/path, not {mask_url(value)!r}")
        if any(ch.isspace() for ch in value):
            raise ValueError("must not contain spaces (encode them as %20)")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in item or "\n" in item:
                raise ValueError(f"the value of header {name!r} must not contain line breaks")
        return value

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one status, or be left out for any 2xx")
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status (100 to 599)")
        return value

    def expects(self, status: int) -> bool:
        """Whether ``status`` means success."""
        if self.expected_status is None:
            return 200 <= status <= 299
        if isinstance(self.expected_status, int):
            return status == self.expected_status
        return status in self.expected_status

    def expected_text(self) -> str:
        if self.expected_status is None:
            return "2xx"
        if isinstance(self.expected_status, int):
            return str(self.expected_status)
        return " or ".join(str(code) for code in self.expected_status)

    def masked(self) -> dict[str, Any]:
        data = super().masked()
        data["url"] = mask_url(self.url)
        data["headers"] = mask_map(self.headers)
        return data

    def unmasked(self, previous: BaseModel) -> ApiParameters:
        assert isinstance(previous, ApiParameters)
        return self.model_copy(
            update={
                "url": unmask_url(self.url, previous.url),
                "headers": unmask_map(self.headers, previous.headers, fold=True),
            }
        )


class ApiAction(BaseAction):
    """Make one HTTP request (see the module docstring); its URL is its destination."""

    kind = "api"
    parameters = ApiParameters

    def destinations(self, params: BaseModel) -> Mapping[str, str]:
        assert isinstance(params, ApiParameters)
        return {"parameters.url": params.url}

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Send the request; ok when the status is the expected one.

        Returns:
            ``http_status`` when an answer came; a failed outcome with the reason when none did.
        """
        assert isinstance(params, ApiParameters)
        import httpx  # only runtimes with api tasks pay for importing it

        shown = f"{params.method} {mask_url(params.url)}"
        request: dict[str, Any] = {"headers": params.headers}
        if isinstance(params.body, str):
            request["content"] = params.body.encode()
            if not any(name.lower() == "content-type" for name in params.headers):
                request["headers"] = {**params.headers, "Content-Type": "text/plain; charset=utf-8"}
        elif params.body is not None:
            request["json"] = params.body
        ctx.log(f"{shown}")
        started = trio.current_time()
        transport = ctx.outbound.transport(internal=ctx.reaches_internal)
        try:
            async with httpx.AsyncClient(
                transport=transport, timeout=params.timeout, follow_redirects=False, trust_env=False
            ) as client:
                with trio.fail_after(params.timeout):
                    async with client.stream(params.method, params.url, **request) as response:
                        head = await _read_head(response, BODY_LOG_LIMIT)
        except OutboundRefusedError as exc:
            return ctx.fail(f"{shown} refused: {exc.message}")
        except (trio.TooSlowError, httpx.TimeoutException):
            return ctx.fail(f"{shown}: no answer within {params.timeout:g}s")
        except (httpx.HTTPError, OSError, ValueError) as exc:
            # ValueError: httpx refuses some inputs only when sending (an IDNA host, a header value).
            return ctx.fail(f"{shown} failed: {type(exc).__name__}: {mask_url(str(exc)) if str(exc) else 'no reason given'}")
        elapsed = (trio.current_time() - started) * 1000
        status = response.status_code
        ctx.log(f"answered {status} {response.reason_phrase} in {elapsed:.0f} ms")
        for line in head.splitlines():
            ctx.kept(line)  # the body is the creator's and admins' to read, not the topic's
        if params.expects(status):
            return ActionOutcome(ok=True, http_status=status)
        return ActionOutcome(
            ok=False, http_status=status, error=f"{shown} answered {status}, expected {params.expected_text()}"
        )


async def _read_head(response: Any, limit: int) -> str:
    """The first ``limit`` bytes of the body, decoded, with a note when there was more.

    The rest is read and dropped (memory stays bounded; the request's timeout bounds the time):
    leaving httpx's stream half read leaves its generators to the garbage collector.
    """
    head = bytearray()
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if len(head) < limit:
            head += chunk[: limit - len(head)]
    text = bytes(head).decode(response.encoding or "utf-8", "replace")
    if total > limit:
        text += f"\n... (body cut at {limit} of {total} bytes)"
    return text
