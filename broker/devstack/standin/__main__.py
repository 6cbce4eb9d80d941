"""``python -m broker.devstack.standin -H HOST -p PORT``: moto's server, enforcing like AWS.

``INITIAL_NO_AUTH_ACTION_COUNT`` keeps moto's meaning: that many first calls go unchecked
(to create the broker's own user), every later one is authorized. Decisions are logged to
stderr (denials at INFO, with AWS's reason; allows at DEBUG with ``--verbose``).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.devstack.standin")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--verbose", action="store_true", help="log allowed calls too")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto import server

    from broker.devstack.standin.moto_hooks import install

    install()
    server.main(["-H", args.host, "-p", str(args.port)])


if __name__ == "__main__":
    main()
