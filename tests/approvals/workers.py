"""A broker in its own OS process, serving HTTP on a free port (a replica, for race tests).

Started with multiprocessing's "spawn" method, so the child shares nothing with the test
process but the files (scopes, keys) and the database named by its arguments.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from broker.app import create_app
from broker.services import build_services
from broker.store.sql import SqlStore
from tests.fixtures.broker import FakeIssuer
from tests.fixtures.broker import test_settings as broker_settings


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        return  # request lines carry link tokens


def serve_replica(root: str, store_url: str, ready: Queue[int], stop: Event) -> None:
    """Serve a broker on ``store_url`` with the scopes and keys under ``root`` until ``stop``.

    Replicas run on the real clock (a fake clock would stand still in each process, at a
    different instant); the backends are fakes.
    """
    settings = broker_settings(Path(root))
    issuers = {name: FakeIssuer(name, time.time) for name in ("aws", "vault", "database")}
    services = build_services(
        settings, clock=time.time, issuers=issuers, store=SqlStore.from_url(store_url)
    )
    app = create_app(services=services)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    ready.put(server.server_port)
    stop.wait(300)
    server.shutdown()
    services.close()
