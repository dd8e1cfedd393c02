"""The ASGI application factory: a Starlette app over the one route table (``opencues.web.routes``)."""

from __future__ import annotations

import gc
import sys
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from opencues import logs
from opencues.filestore import open_file_store
from opencues.ingestion_rules import RulesCache
from opencues.settings import Settings, load_settings
from opencues.storage import Database, open_database
from opencues.studio import routes as studio_routes
from opencues.web import control_routes, docs_page, errors, routes
from opencues.web.auth import build_rate_limiter
from opencues.web.dispatch import DirectRoute
from opencues.web.observe import ObserveRequests
from opencues.web.responses import json_response


def create_app(settings: Settings | None = None, db: Database | None = None, *, freeze_gc: bool = False) -> Starlette:
    """The API application. ``freeze_gc``: the server process's own app (see ``_freeze_startup_objects``)."""
    settings = settings or load_settings()
    owns_db = db is None

    @asynccontextmanager
    async def lifespan(app: Starlette):
        app.state.db = db or open_database(settings)
        if settings.metrics:
            from opencues import metrics

            metrics.watch_pool(app.state.db.engine)
        # Job workers run in-process unless disabled (OPENCUES_JOB_WORKERS=0 + `opencues worker`).
        pool = None
        if settings.job_workers > 0:
            from opencues.worker import WorkerPool

            pool = WorkerPool(app.state.db, app.state.file_store, settings, settings.job_workers).start()
            app.state.wake_workers = pool.nudge
        if freeze_gc:
            _freeze_startup_objects()
        try:
            yield
        finally:
            if pool is not None:
                pool.stop()
            for limiter in (app.state.rate_limiter, app.state.analytics_rate_limiter):
                if limiter is not None:
                    limiter.close()
            if owns_db:
                app.state.db.dispose()
            _forget_this_process_gauges()

    app = Starlette(lifespan=lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.file_store = open_file_store(settings)
    app.state.rate_limiter = build_rate_limiter(settings)
    app.state.ingestion_rules = RulesCache(settings.ingestion_rules_cache_seconds)
    app.state.analytics_rate_limiter = None  # made at the first analytics request (opencues.web.auth)
    app.state.wake_workers = lambda: None  # replaced by the in-process worker pool's, if any
    errors.install(app)
    routes.register(app)
    control_routes.register(app)  # /-/: health and readiness always; the rest needs OPENCUES_ADMIN_TOKEN
    studio_routes.register(app)  # /studio: the web console
    if settings.admin_token or settings.journal == "on":
        from opencues.web.control_layer import ControlLayer

        app.add_middleware(ControlLayer, state=app.state, settings=settings)
    docs_page.install(app)  # /openapi.json and /docs
    app.router.routes.append(DirectRoute("/healthz", healthz, "GET", include_in_schema=False))
    if settings.metrics:
        app.router.routes.append(DirectRoute("/metrics", metrics_view, "GET", include_in_schema=False))

    app.add_middleware(ObserveRequests, metrics=settings.metrics)  # outermost: times everything

    return app


async def healthz(_request: Request):
    return json_response({"status": 200, "title": "OK"})


async def metrics_view(request: Request):
    """Prometheus exposition (no auth: scrapers don't log in; OPENCUES_METRICS=off removes it)."""
    from starlette.concurrency import run_in_threadpool

    from opencues import metrics

    body, content_type = await run_in_threadpool(metrics.render, request.app.state.db)
    return Response(body, media_type=content_type)


def _forget_this_process_gauges() -> None:
    """Under ``serve --workers N``: this process's live gauges (pool use) end with it."""
    import os

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)


def _freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, routes, the engine) out of the garbage
    collector's reach. Otherwise each full collection walks those ~100,000 long-lived objects
    (~50 ms) while requests wait: with them frozen, track's p99 latency under load went from
    ~40 ms to ~3.5 ms (``bench/bench_api.py``). Objects made later are collected as usual.

    Under ``opencues serve`` collections were off since the process started (``opencues.__main__``):
    they are turned on here, without the full collection first (~40 ms of the start): it would
    free ~1,000 objects of the start-up (~0.3 MB: discarded functions and classes), frozen instead."""
    if gc.isenabled():
        gc.collect()
    gc.freeze()
    gc.enable()


def app_factory() -> Starlette:
    """Entry point for ``uvicorn --factory`` (each server process reads the environment)."""
    settings = load_settings()
    logs.configure(settings)
    # A thread waking from I/O (the group commit's writer, the thread pool's) waits for the GIL
    # until the busy event loop thread gives it up: by default after 5 ms, paid at each of the
    # writer's ~8 waits on PostgreSQL per commit (a 3-row commit took 30 ms beside a busy loop,
    # 4-10 ms at 0.5 ms: bench/README.md).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return create_app(settings, freeze_gc=True)


GIL_SWITCH_INTERVAL_S = 0.0005
