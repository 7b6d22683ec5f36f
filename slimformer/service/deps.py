"""FastAPI dependencies shared by the routes, as `Annotated` aliases.

`CurrentTenant` lives in `slimformer.service.auth`, next to the key checks it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from slimformer.contracts.settings import Settings
from slimformer.service.errors import InvalidRequest
from slimformer.service.schemas import MAX_OFFSET, MAX_PAGE_SIZE
from slimformer.store.db import session_scope
from slimformer.store.pages import CURSOR_PATTERN, MAX_CURSOR_LENGTH


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request, in one transaction.

    Routes that write commit before they return, so the answer is sent only once the write is
    durable (the dependency's own exit runs after the response has gone out); anything left
    uncommitted by an error is rolled back.
    """
    with session_scope(request.app.state.session_factory) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int
    cursor: str | None = None


def get_page(
    settings: SettingsDep,
    # The schema's maximum is the app's own max_page_size (`slimformer.service.openapi`).
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page (at most the server's page size)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip (not with `cursor`)")] = 0,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1, max_length=MAX_CURSOR_LENGTH, pattern=CURSOR_PATTERN,
            description="the `next_cursor` of the page before, from this same list (same filters and sort); "
            "a malformed or foreign cursor is a 422",
        ),
    ] = None,
) -> PageParams:
    """`limit`, `offset` and `cursor` query parameters; a `limit` over the server's cap is a 422, not silently cut."""
    if limit is None:
        limit = settings.default_page_size
    if limit > settings.max_page_size:
        raise InvalidRequest.at(
            ["query", "limit"],
            f"limit {limit} is over the maximum page size {settings.max_page_size}",
            "less_than_equal",
            le=settings.max_page_size,
        )
    if cursor is not None and offset:
        raise InvalidRequest.at(
            ["query", "offset"], "give a cursor or an offset, not both (a cursor already says where the page starts)",
            "cursor_with_offset",
        )
    return PageParams(limit=limit, offset=offset, cursor=cursor)


PageDep = Annotated[PageParams, Depends(get_page)]
