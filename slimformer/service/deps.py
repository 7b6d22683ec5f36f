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


def get_page(
    settings: SettingsDep,
    # The schema's maximum is the app's own max_page_size (`slimformer.service.openapi`).
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page (at most the server's page size)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0,
) -> PageParams:
    """`limit`/`offset` query parameters; a `limit` over the server's cap is a 422, not silently cut."""
    if limit is None:
        limit = settings.default_page_size
    if limit > settings.max_page_size:
        raise InvalidRequest.at(
            ["query", "limit"],
            f"limit {limit} is over the maximum page size {settings.max_page_size}",
            "less_than_equal",
            le=settings.max_page_size,
        )
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(get_page)]
