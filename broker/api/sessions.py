"""Flask sessions only where a browser needs one.

The approval page keeps its CSRF secret in Flask's signed session cookie. The JSON API never
uses a session, yet Flask would open (and sign) one on every request; on the hot path that
cost more than verifying the agent's token. This interface opens sessions for browser pages
only, and builds the cookie signer once instead of per request.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask.sessions import NullSession, SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

# Paths of pages a browser uses (the approval page, OIDC sign-in); every other path is the
# JSON API.
BROWSER_PATHS = ("/approve/", "/requests/", "/auth/")


class BrowserOnlySessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if self._serializer is None:
            self._serializer = super().get_signing_serializer(app)
        return self._serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(BROWSER_PATHS):
            return NullSession()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        if isinstance(session, NullSession):
            return
        super().save_session(app, session, response)
