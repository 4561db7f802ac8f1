"""``@validate_body``: a request body read as a form or as JSON, validated by a pydantic model.

quart-schema's ``validate_request`` takes one encoding; OAuth2 clients post forms
(``application/x-www-form-urlencoded``) while scripts post JSON, and the token endpoints take
both. Failures raise quart-schema's own ``RequestSchemaValidationError``, so they are answered
like every other validation failure (422 with the field paths), and the OpenAPI document lists
both encodings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request
from quart_schema import DataSource, RequestSchemaValidationError
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE

__all__ = ["FORM_OR_JSON_ATTRIBUTE", "validate_body"]

FORM_OR_JSON_ATTRIBUTE = "_vareon_form_or_json"
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def validate_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the body (form or JSON) with ``model``; the view gets it as ``data=``.

    A form is read when the Content-Type says so; anything else is parsed as JSON (malformed JSON
    is a 400).
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
        MalformedJSONError: the body is not JSON (and not a form).
        RequestSchemaValidationError: the data does not fit ``model``.
    """
    raw: Any
    if request.mimetype in _FORM_TYPES:
        form = await request.form
        raw = {key: form[key] for key in form}
    else:
        raw = await request.get_json(force=True)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestSchemaValidationError(exc) from None
