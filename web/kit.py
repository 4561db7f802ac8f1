"""What every domain's web module is made of: its face, pages, and resource routes.

- :func:`face`: the running domain's face from the registry (a dictionary lookup, no actor ask);
  a domain that is not running is a 503 that says so, never a 500.
- :class:`PageQuery` and :func:`page_reply`: ``?limit=`` (1-500, default 50) and ``?offset=``,
  a JSON array in the body and the total in ``X-Total-Count``.
- :func:`resource_routes`: list, create, get, update and delete of a
  :class:`~actors.kit.resources.Resources` face, with the roles, the wire shapes and the OpenAPI
  descriptions given; :func:`action_routes`: ``POST .../{id}/<action>`` for the face's actions
  that take an id alone (start, stop...). A domain writes only its other routes.

Errors need nothing here: every ``ServiceError`` a face raises leaves as its status through
:mod:`web.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from actors.kit.parsing import LIST_LIMIT_MAX, OFFSET_MAX
from actors.kit.resources import Resources
from actors.kit.wire import Page
from vareon_runtime.auth import Principal, Role
from vareon_runtime.errors import NotRegisteredError, UnavailableError

from .context import current_context
from .errors import answers
from .permissions import current_principal, requires

__all__ = ["TOTAL_COUNT_HEADER", "PageQuery", "ResourceDocs", "action_routes", "face", "page_reply", "resource_routes"]

TOTAL_COUNT_HEADER = "X-Total-Count"

F = TypeVar("F")
T = TypeVar("T")


def face(kind: type[F]) -> F:
    """The face of a running domain (``face(Agents)``).

    Raises:
        UnavailableError: its module is not running (503, saying so).
    """
    try:
        return current_context().registry.face(kind)
    except NotRegisteredError:
        title = getattr(kind, "title", kind.__name__)
        raise UnavailableError(
            f"the {title} is not running (not installed, disabled, or restarting); see /api/system/status"
        ) from None


class PageQuery(BaseModel):
    """``?limit=`` and ``?offset=`` of a list; a domain's query adds its filters."""

    limit: int = Field(50, ge=1, le=LIST_LIMIT_MAX, description="Items per page.")
    offset: int = Field(0, ge=0, le=OFFSET_MAX, description="Items skipped before the page.")


def page_reply(page: Page[T]) -> tuple[list[T], int, dict[str, str]]:
    """A page as a reply: the items, 200, the total in ``X-Total-Count``."""
    return page.items, 200, {TOTAL_COUNT_HEADER: str(page.total)}


@dataclass(frozen=True)
class ResourceDocs:
    """The OpenAPI descriptions of a resource's routes (Markdown: single backticks)."""

    list: str
    create: str
    get: str
    update: str
    delete: str


def _named(view: Callable[..., Any], name: str, doc: str) -> Callable[..., Any]:
    view.__name__ = view.__qualname__ = name
    view.__doc__ = doc
    return view


def resource_routes(
    blueprint: Blueprint,
    path: str,
    kind: type[Resources[Any]],
    *,
    item: type[BaseModel],
    query: type[PageQuery],
    create: type[BaseModel] | None,
    update: type[BaseModel] | None,
    read: Role,
    write: Role,
    docs: ResourceDocs,
    delete: bool = True,
) -> None:
    """Add ``GET path``, ``POST path``, ``GET path/<id>``, ``PUT path/<id>`` and
    ``DELETE path/<id>`` for the face ``kind`` to ``blueprint``.

    Args:
        path: the collection's path (``/api/myntrix/agents``).
        kind: the face; its ``noun`` names the routes (``list_agents``, ``get_agent``...).
        item: the wire shape of one entity; a list answers a JSON array of them.
        query: the list's query (``limit``, ``offset`` and the face's filters).
        create, update: the bodies (None: no such route).
        read: the role that may list and get; ``write``: the role that may change.
        docs: the routes' descriptions.
        delete: whether entities can be deleted.

    The face's ``create``, ``update`` and ``delete`` take the caller
    (:class:`~vareon_runtime.auth.Principal`) as ``by``, for the domains whose rules depend on it.
    """
    noun = kind.noun
    one = f"{path}/<{noun}_id>"

    async def list_view(query_args: PageQuery) -> tuple[list[Any], int, dict[str, str]]:
        return page_reply(await face(kind).list(**query_args.model_dump()))

    blueprint.get(path)(
        requires(read)(validate_querystring(query)(validate_response(list[item])(_named(list_view, f"list_{noun}s", docs.list))))  # type: ignore[valid-type]
    )

    async def get_view(**ids: str) -> Any:
        return await face(kind).get(ids[f"{noun}_id"])

    blueprint.get(one)(requires(read)(validate_response(item)(_named(get_view, f"get_{noun}", docs.get))))

    if create is not None:

        async def create_view(data: BaseModel) -> tuple[Any, int]:
            by: Principal = current_principal()
            return await face(kind).create(data, by=by), 201  # type: ignore[attr-defined]

        blueprint.post(path)(
            requires(write)(validate_request(create)(validate_response(item, 201)(_named(create_view, f"create_{noun}", docs.create))))
        )

    if update is not None:

        async def update_view(data: BaseModel, **ids: str) -> Any:
            return await face(kind).update(ids[f"{noun}_id"], data, by=current_principal())  # type: ignore[attr-defined]

        blueprint.put(one)(
            requires(write)(validate_request(update)(validate_response(item)(_named(update_view, f"update_{noun}", docs.update))))
        )

    if delete:

        async def delete_view(**ids: str) -> tuple[str, int]:
            await face(kind).delete(ids[f"{noun}_id"], by=current_principal())  # type: ignore[attr-defined]
            return "", 204

        blueprint.delete(one)(requires(write)(answers(204, "deleted")(_named(delete_view, f"delete_{noun}", docs.delete))))



def action_routes(
    blueprint: Blueprint,
    path: str,
    kind: type[Resources[Any]],
    actions: dict[str, str],
    *,
    item: type[BaseModel],
    role: Role,
) -> None:
    """Add ``POST path/<id>/<action>`` for each of ``actions`` (its name: its description),
    answering ``await face.<action>(id)`` as ``item``."""
    noun = kind.noun
    for action, doc in actions.items():

        async def view(*, _action: str = action, **ids: str) -> Any:
            return await getattr(face(kind), _action)(ids[f"{noun}_id"])

        blueprint.post(f"{path}/<{noun}_id>/{action}")(requires(role)(validate_response(item)(_named(view, f"{action}_{noun}", doc))))
