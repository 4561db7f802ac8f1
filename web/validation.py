"""How request bodies are read: strict JSON, UTF-8 forms, the Content-Type each route takes.

:class:`VareonRequest` is the app's request class:

- JSON (``application/json``, ``application/*+json``) is parsed by :func:`parse_json`: UTF-8
  only, no ``NaN`` or ``Infinity``, no lone surrogates (``"\\ud800"``: a string nothing
  downstream could encode), nesting at most about 200 deep. Each refusal is a 400
  ``malformed_json`` that says why, where the standard library would raise ``RecursionError``
  or ``UnicodeDecodeError`` and answer 500.
- A JSON-only route (quart-schema's ``@validate_request``) answers any other Content-Type with
  415 naming the type it takes, rather than validating "no body" into a puzzling 422.
- A urlencoded form must be UTF-8 (400 ``malformed_form``); a multipart form with more parts
  than ``MAX_FORM_PARTS`` is a 413 that says so, not one that blames the body size.

``@validate_body`` reads a body as a form or as JSON, for the token endpoints: OAuth2 clients
post forms (``application/x-www-form-urlencoded``) while scripts post JSON. Validation failures
raise quart-schema's own ``RequestSchemaValidationError``, so they are answered like every
other (422 with the field paths), and the OpenAPI document lists both encodings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import pydantic_core
from pydantic import BaseModel, ValidationError
from quart import request
from quart.wrappers.request import Body
from quart_schema import DataSource, RequestSchemaValidationError
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from quart_trio.formparser import TrioFormDataParser
from quart_trio.wrappers import TrioRequest
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import (
    FormTooLargeError,
    MalformedFormError,
    MalformedJSONError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "FORM_OR_JSON_ATTRIBUTE",
    "FORM_TYPES",
    "JSON_TYPE",
    "VareonRequest",
    "load_body",
    "parse_json",
    "validate_body",
]

FORM_OR_JSON_ATTRIBUTE = "_vareon_form_or_json"
JSON_TYPE = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def parse_json(data: bytes | str) -> Any:
    """Parse one JSON text strictly (RFC 8259): UTF-8, no NaN, no lone surrogates.

    Raises:
        ValueError: it is not such JSON (``UnicodeDecodeError`` for bytes that are not UTF-8);
            the message says what and where. Nesting past the parser's limit is a ValueError
            too, never a ``RecursionError``.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return pydantic_core.from_json(text, allow_inf_nan=False)


class _FormParser(TrioFormDataParser):
    """Quart-Trio's form parser, except that a urlencoded body must be UTF-8."""

    async def _parse_urlencoded(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[MultiDict[str, str], MultiDict[str, Any]]:
        raw = await body
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            # Quart decodes without a guard; its parser would then drop the body in silence.
            raise MalformedFormError(error) from None
        return self.cls(parse_qsl(text, keep_blank_values=True)), self.cls()

    parse_functions = {
        **TrioFormDataParser.parse_functions,
        "application/x-www-form-urlencoded": _parse_urlencoded,
        "application/x-url-encoded": _parse_urlencoded,
    }


class VareonRequest(TrioRequest):
    """A request whose body is read strictly (see the module's docstring)."""

    form_data_parser_class = _FormParser

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """Parse the body as JSON (:func:`parse_json`).

        Raises:
            UnsupportedMediaTypeError: the body is not declared JSON (and neither ``force`` nor
                ``silent``).
            MalformedJSONError: it does not parse (unless ``silent``: then None).
        """
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            if silent:
                return None
            raise UnsupportedMediaTypeError(self._where(), [JSON_TYPE], self.mimetype or None)
        raw = await self.get_data(cache=cache, as_text=False)
        try:
            result = parse_json(raw)
        except (ValueError, RecursionError) as error:
            result = None if silent else self.on_json_loading_failed(error)
        if cache:
            self._cached_json[silent] = result
        return result

    def on_json_loading_failed(self, error: Exception) -> Any:
        raise MalformedJSONError(error)

    async def _load_form_data(self) -> None:
        try:
            await super()._load_form_data()
        except RequestEntityTooLarge as error:
            if isinstance(error, FormTooLargeError) or _over_its_limit(self.body):
                raise  # the body itself passed max_body_size: the generic 413 says so
            # Within the size limit, so the parser refused the form's shape: too many parts, or
            # (when the field limit is below the body limit) too big a field.
            field = self.max_form_memory_size
            limit = self.max_content_length
            ambiguous = field is not None and (limit is None or field < limit)
            raise FormTooLargeError(self.max_form_parts, field if ambiguous else None) from None

    def _where(self) -> str:
        return f"{self.method} {self.path}"


def _over_its_limit(body: Body) -> bool:
    # Quart's body records the error it will raise once it grew past max_content_length.
    return getattr(body, "_must_raise", None) is not None


def validate_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the body (form or JSON) with ``model``; the view gets it as ``data=``.

    A form is read when the Content-Type says so, JSON when it says JSON; anything else is a
    415 naming the types taken, malformed JSON a 400.
    """

    def decorator(view: F) -> F:
        # quart-schema documents the request body from this attribute; the provider in app.py
        # adds the JSON encoding beside the form one.
        setattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.FORM))
        setattr(view, FORM_OR_JSON_ATTRIBUTE, True)

        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            data = await load_body(model)
            return await view(*args, data=data, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


async def load_body(model: type[M]) -> M:
    """Read the current request's body as a form or JSON and validate it with ``model``.

    Raises:
        UnsupportedMediaTypeError: the Content-Type is neither a form nor JSON.
        MalformedJSONError, MalformedFormError: the body does not parse.
        RequestSchemaValidationError: the data does not fit ``model``.
    """
    raw: Any
    if request.mimetype in FORM_TYPES:
        form = await request.form
        raw = {key: form[key] for key in form}
    elif request.is_json:
        raw = await request.get_json()
    else:
        raise UnsupportedMediaTypeError(
            f"{request.method} {request.path}", [JSON_TYPE, *FORM_TYPES], request.mimetype or None
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestSchemaValidationError(exc) from None
