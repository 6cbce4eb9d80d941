"""Fixtures shared across the suite live in tests/fixtures; this file only registers them."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.broker",
    "tests.fixtures.slack",
    "tests.fixtures.browser",
    "tests.fixtures.secret_scan",
    "tests.fixtures.oidc",
    "tests.fixtures.agent_issuer",
    "pytester",
    "tests.fixtures.openbao",
    "tests.fixtures.moto",
    "tests.fixtures.backends",
]
