"""Absolute URLs pointing back at this server (every ``url`` field in the API)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request


def base_url(request: Request) -> str:
    configured = request.app.state.settings.public_url
    if configured:
        return configured.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"


def account_url(request: Request, account_id: str, *parts: str) -> str:
    tail = "".join("/" + quote(str(p), safe="") for p in parts)
    return f"{base_url(request)}/v2/accounts/{quote(account_id, safe='')}{tail}"
