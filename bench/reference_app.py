"""The bench's reference: a bare Starlette app whose one route reads the body and answers the same
bytes, served by uvicorn exactly as ``opencues serve`` serves opencues (the same HTTP protocol
class, event loop and log settings). ``bench_hot_paths.py`` starts it:

    python bench/reference_app.py PORT WORKERS
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def echo(request):
    return Response(await request.body(), media_type="application/json")


app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PATCH"])])


def main() -> None:
    import uvicorn

    from opencues.web.server import uvicorn_options

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(
        "reference_app:app",
        app_dir=__file__.rsplit("/", 1)[0],
        host="127.0.0.1",
        port=port,
        workers=workers,
        **{**uvicorn_options(None), "log_config": None, "log_level": "warning", "access_log": False},
    )


if __name__ == "__main__":
    main()
