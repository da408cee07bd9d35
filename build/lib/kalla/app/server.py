"""``kalla serve``: the app on uvicorn, refusing to listen beyond loopback without a token."""

from __future__ import annotations

import logging

from kalla.errors import ConfigError
from kalla.settings import Settings, get_settings, is_loopback


def check_bind(host: str, settings: Settings) -> None:
    if not is_loopback(host) and settings.api_token is None:
        raise ConfigError(
            f"refusing to listen on {host}: beyond loopback the app needs KALLA_API_TOKEN "
            "(clients then send Authorization: Bearer <token>)"
        )


def serve(
    settings: Settings | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
) -> None:
    """Run the app until SIGTERM/SIGINT (in-flight embedded runs resume on the next start)."""
    import uvicorn

    from kalla.app.main import check_settings, create_app

    settings = settings or get_settings()
    host = host or settings.app_host
    port = settings.app_port if port is None else port
    check_bind(host, settings)
    settings = settings.model_copy(update={"app_host": host, "app_port": port})
    check_settings(settings)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
