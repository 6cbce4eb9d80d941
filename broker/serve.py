"""`broker serve`: the broker under gunicorn, a production WSGI server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from broker.config import Settings
from broker.logs import configure_logging

GUNICORN_DEFAULT_FIELD_SIZE = 8190


class BrokerServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn with the broker's settings; each worker builds its own app and services."""

    def __init__(
        self, settings: Settings, workers: int | None = None, bind: str | None = None
    ) -> None:
        self.settings = settings
        self.options = {
            "bind": bind or settings.listen,
            "workers": workers or settings.workers,
            # gthread, answering gunicorn's own refusals (a header too large...) in JSON
            "worker_class": "broker.serve_errors.JsonErrorWorker",
            "threads": settings.threads,
            "timeout": 60,  # long-polls last at most 30 s
            "graceful_timeout": 20,
            "keepalive": 5,
            "limit_request_line": 8190,
            "limit_request_fields": 64,
            # A header may hold a token of identity.max_token_bytes (the Authorization line
            # has room to spare): the broker, not gunicorn, refuses larger tokens (401).
            "limit_request_field_size": header_limit(settings),
            "accesslog": None,
            "proc_name": "credential-broker",
            # gunicorn's control socket is an unauthenticated admin interface in $HOME, shared
            # by every broker on the host: the broker is managed by signals, not through it.
            "control_socket_disable": True,
            "post_worker_init": _post_worker_init,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from broker.app import create_app
        from broker.services import build_services
        from broker.wiring import backend_factories

        services = build_services(self.settings, **backend_factories())
        app = create_app(services=services)
        app.config["BROKER_SERVICES_START"] = services.start_background
        return app


def header_limit(settings: Settings) -> int:
    """gunicorn's limit on one header line: room for ``Authorization: Bearer`` and the
    largest token the broker accepts, and never below gunicorn's default."""
    return max(GUNICORN_DEFAULT_FIELD_SIZE, settings.identity.max_token_bytes + 1024)


def _post_worker_init(worker: Any) -> None:
    start = worker.wsgi.config.get("BROKER_SERVICES_START")
    if start is not None:
        start()


def serve(settings: Settings, workers: int | None = None, bind: str | None = None) -> None:
    configure_logging()
    if (workers or settings.workers) > 1:
        # Several workers: prometheus_client aggregates their samples through files, which
        # must start empty (a previous run's samples would be counted again).
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
            prefix="broker-metrics-"
        )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        os.makedirs(directory, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    # Keys and schema are prepared once here, before workers start racing for them.
    from broker.keys import load_keys
    from broker.store.sql import SqlStore

    load_keys(settings.state_dir)
    SqlStore.from_url(settings.database_url).close()
    BrokerServer(settings, workers, bind).run()
