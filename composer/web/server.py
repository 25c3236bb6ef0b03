"""Running an ASGI app of ours with uvicorn (``preview``, ``serve``)."""

from __future__ import annotations

from typing import Any


def run(app: Any, host: str, port: int, *, public: bool) -> None:
    """Serve ``app`` until Ctrl-C. ``public``: behind a proxy (trust its headers)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=public,
        server_header=False,
        timeout_graceful_shutdown=5 if public else 1,
    )
