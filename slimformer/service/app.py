"""The FastAPI application.

    uvicorn --factory slimformer.service.app:create_app     (settings from SLIMFORMER_* variables)

At start the app makes sure the database schema is current: with `auto_migrate` it upgrades it,
otherwise it refuses to start on an empty or old schema, with a message naming the command to run.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from slimformer import __version__
from slimformer.contracts.settings import Settings, get_settings
from slimformer.service.concurrency import ConcurrencyLimitMiddleware
from slimformer.service.exception_handlers import install_exception_handlers
from slimformer.service.limits import BodySizeLimitMiddleware
from slimformer.service.openapi import install_openapi
from slimformer.service.rate_limit import TokenBucketLimiter
from slimformer.service.routes import candidates, datasets, health, jobs, teachers
from slimformer.service.ui import install_dashboard
from slimformer.store.db import make_engine, make_session_factory, pool_capacity
from slimformer.store.schema import check_schema, upgrade

log = logging.getLogger(__name__)

# Room for the multipart boundaries and part headers around an upload of exactly the limit.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def prepare_database(app: FastAPI) -> None:
    """Upgrade (auto_migrate) or check the schema of the app's database.

    Raises:
        SchemaOutOfDate: auto_migrate is off and the schema is not current; says what to run.
        DatabaseUnavailable: the database cannot be reached.
    """
    settings: Settings = app.state.settings
    if settings.auto_migrate:
        revision = upgrade(app.state.engine)
        log.info("database schema at %s", revision)
    else:
        check_schema(app.state.engine)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment).

    Creating the app connects to nothing; the database is checked when the app starts (lifespan).

    Args:
        settings: the configuration; None reads `SLIMFORMER_*` variables.

    Returns:
        The FastAPI app, with `app.state.settings`, `.engine`, `.session_factory` and `.rate_limiter`
        (this process's counts of submissions and uploads per API key).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(prepare_database, app)
        settings.artifacts.mkdir(parents=True, exist_ok=True)
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="slimformer",
        version=__version__,
        summary="Compress BERT-class transformers by neural architecture search.",
        lifespan=lifespan,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.rate_limiter = TokenBucketLimiter(settings.rate_limit_per_minute)
    app.add_middleware(
        BodySizeLimitMiddleware,
        default_limit=settings.max_body_bytes,
        path_limits={
            datasets.router.prefix: settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
            teachers.router.prefix: settings.max_teacher_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        },
    )
    # Added last, so it is outermost: a request waits for its turn before anything reads its body.
    app.add_middleware(ConcurrencyLimitMiddleware, limit=pool_capacity(app.state.engine))
    install_exception_handlers(app)
    for module in (jobs, candidates, datasets, teachers, health):
        app.include_router(module.router)
    install_openapi(app, settings.max_page_size)
    install_dashboard(app)
    return app
