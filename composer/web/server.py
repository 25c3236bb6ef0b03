"""Running an ASGI app of ours with uvicorn (``preview``, ``serve``)."""

from __future__ import annotations

from typing import Any


def run(app: Any, host: str, port: int, *, public: bool) -> None:
    """Serve ``app`` until Ctrl-C. ``public``: the production server (a longer
    graceful shutdown)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=False,  # X-Forwarded-For: only from NEWSLETTER_TRUSTED_PROXIES (Guard)
        server_header=False,
        timeout_graceful_shutdown=5 if public else 1,
    )
