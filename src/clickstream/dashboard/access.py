"""Who may use the dashboard: its token, and which pages may open its WebSocket.

:class:`AccessGate` wraps the whole app (an ASGI middleware). With ``dashboard.token`` set:

* ``GET /?token=...`` (a link, a bookmark, a wall screen) or the form of the sign-in page
  (``POST /``) sets an HttpOnly, SameSite=Strict cookie and redirects to ``./``, so the token
  leaves the address bar and the history;
* every other path needs that cookie or ``Authorization: Bearer <token>`` (scripts,
  Prometheus), compared in constant time; without it the answer is 401: the sign-in page for
  a browser, JSON under ``/api/``, text elsewhere. A browser that followed a link from
  another site gets a page that reloads itself first, since SameSite=Strict withholds the
  cookie from that one request;
* ``/healthz`` (probes) and ``/static/`` (the package's own script, styles and uPlot) stay
  open.

A WebSocket must also come from an allowed page: with ``dashboard.allowed_origins`` set, its
``Origin`` must be one of them (a missing one is refused); otherwise a browser's ``Origin``
must be the dashboard's own address, and clients that send none are accepted. A refused
WebSocket gets an HTTP answer (403 for the origin, 401 for the token) instead of an upgrade.

The cookie holds an HMAC of the token, not the token: changing the token signs every browser
out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGGER = logging.getLogger("clickstream.dashboard")

COOKIE = "clickstream_dashboard"
COOKIE_MAX_AGE_S = 400 * 24 * 3600
"""How long a browser stays signed in (400 days, the longest Chromium keeps a cookie)."""
OPEN_PATHS = ("/healthz", "/static/")
"""Paths served without the token (prefixes ending in ``/``)."""
MAX_FORM_BYTES = 4096

_REALM = 'Bearer realm="clickstream dashboard"'
_COOKIE_LABEL = b"clickstream dashboard cookie v1"
_SIGN_IN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "WWW-Authenticate": _REALM,
}
_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clickstream · sign in</title>
<style>
body{{margin:0;min-height:100vh;display:grid;place-items:center;background:#0d1117;
color:#e6edf3;font:15px/1.5 system-ui,sans-serif}}
main{{max-width:32rem;padding:1.5rem}} h1{{font-size:1.2rem;margin:0 0 .75rem}}
form{{display:flex;gap:.5rem;margin:1rem 0}} input{{flex:1;padding:.45rem .6rem;
background:#161b22;color:inherit;border:1px solid #30363d;border-radius:6px}}
button{{padding:.45rem .9rem;background:#238636;color:#fff;border:0;border-radius:6px}}
code{{background:#161b22;padding:0 .25rem;border-radius:4px}}
.error{{color:#ff7b72}} .hint{{color:#8b98a5;font-size:.9rem}}
</style></head>
<body><main>
<h1>clickstream dashboard</h1>
<p id="sign-in-message"{error_class}>{message}</p>
<form method="post" action="./">
<input type="password" name="token" autocomplete="current-password" aria-label="Token"
 placeholder="Token" required autofocus>
<button type="submit">Open</button>
</form>
<p class="hint">The token is the server's <code>dashboard.token</code> setting
(<code>CLICKSTREAM_DASHBOARD_TOKEN</code>). A link to <code>/?token=TOKEN</code> works too.
This browser then stays signed in. Scripts and Prometheus send
<code>Authorization: Bearer TOKEN</code>.</p>
</main></body></html>
"""
# A link on another site (chat, mail) is a cross-site navigation: SameSite=Strict keeps the
# cookie back. The page reloads itself, a same-site navigation that carries the cookie.
_RELOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0">
<title>clickstream</title></head><body><p>Opening the dashboard…</p></body></html>
"""
_NEEDS_TOKEN = "This dashboard needs its access token."
_WRONG_TOKEN = "That token is not this dashboard's."


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class Access:
    """The token and the allowed origins, and the checks on a request's headers."""

    def __init__(self, token: str | None, allowed_origins: Sequence[str] = ()) -> None:
        self._token = _digest(token.encode()) if token else None
        self._cookie = (
            hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest() if token else None
        )
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    @property
    def needs_token(self) -> bool:
        return self._token is not None

    def token_matches(self, given: str) -> bool:
        """Constant time (both sides hashed first, so not even the length shows)."""
        if self._token is None:
            return True
        return hmac.compare_digest(_digest(given.encode()), self._token)

    def signed_in(self, headers: Headers) -> bool:
        """The request carries ``Authorization: Bearer <token>`` or the sign-in cookie."""
        if self._token is None or self._cookie is None:
            return True
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        cookie = _cookie(headers, COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._cookie.encode())

    def cookie_header(self, secure: bool) -> str:
        """``Set-Cookie`` for a browser that gave the right token. No ``Path``: it defaults to
        the page's folder, which also fits a dashboard served under a path prefix."""
        assert self._cookie is not None
        flags = "; Secure" if secure else ""
        return (
            f"{COOKIE}={self._cookie}; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict{flags}"
        )

    def origin_allowed(self, headers: Headers) -> bool:
        """May a WebSocket with these handshake headers be opened?"""
        origin = headers.get("origin")
        if self.allowed_origins:
            return origin is not None and origin.rstrip("/").lower() in self.allowed_origins
        if origin is None:  # not a browser (websocket clients, curl)
            return True
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _cookie(headers: Headers, name: str) -> str | None:
    """As browsers parse it: other applications on the same host (cookies ignore the port)
    may set cookies that a strict parser stops at."""
    for header in headers.getlist("cookie"):
        value = cookie_parser(header).get(name)
        if value is not None:
            return value
    return None


class AccessGate:
    """ASGI middleware: the sign-in and the checks of :class:`Access` in front of ``app``."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http" or not self.access.needs_token:
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path == "/" and scope["method"] == "POST":
            response = await self._sign_in(scope, await _form_token(receive))
        elif path == "/" and (token := _query_token(scope)) is not None:
            response = await self._sign_in(scope, token)
        elif path.startswith(OPEN_PATHS) or self.access.signed_in(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        else:
            response = _unauthorized(path, Headers(scope=scope))
        await response(scope, receive, send)

    async def _sign_in(self, scope: Scope, token: str) -> Response:
        if not self.access.token_matches(token):
            client = scope.get("client") or ("?", 0)
            LOGGER.warning("wrong dashboard token from %s", client[0])
            return sign_in_page(_WRONG_TOKEN, error=True)
        # 303: the browser follows with a GET, and the token leaves the address bar.
        headers = {"Location": "./", "Cache-Control": "no-store"}
        response = Response(status_code=303, headers=headers)
        response.headers["Set-Cookie"] = self.access.cookie_header(scope.get("scheme") == "https")
        return response

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if not self.access.origin_allowed(headers):
            reason = "this page's origin may not open /ws"
            denial = PlainTextResponse(reason, 403)
        elif not self.access.signed_in(headers):
            reason = "this dashboard needs its token"
            denial = PlainTextResponse(reason, 401, headers={"WWW-Authenticate": _REALM})
        else:
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await denial(scope, receive, send)
        else:  # the server answers 403 to a close before the upgrade
            await send({"type": "websocket.close", "code": 1008, "reason": reason})


def sign_in_page(message: str = _NEEDS_TOKEN, *, error: bool = False) -> HTMLResponse:
    page = _SIGN_IN_PAGE.format(message=message, error_class=' class="error"' if error else "")
    return HTMLResponse(page, status_code=401, headers=_SIGN_IN_HEADERS)


def _unauthorized(path: str, headers: Headers) -> Response:
    if path.startswith("/api/"):
        body = {"error": "this dashboard needs its token: send Authorization: Bearer <token>"}
        return JSONResponse(body, 401, headers={"WWW-Authenticate": _REALM})
    if (
        headers.get("sec-fetch-site") == "cross-site"
        and headers.get("sec-fetch-mode") == "navigate"
    ):
        return HTMLResponse(_RELOAD_PAGE, status_code=401, headers=_SIGN_IN_HEADERS)
    if "text/html" in headers.get("accept", ""):
        return sign_in_page()
    return PlainTextResponse(
        "this dashboard needs its token: send Authorization: Bearer <token>\n",
        401,
        headers={"WWW-Authenticate": _REALM},
    )


def _route_path(scope: Scope) -> str:
    """The path below the app's mount point (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


async def _form_token(receive: Receive) -> str:
    """The ``token`` field of a urlencoded form body (at most MAX_FORM_BYTES read)."""
    body = b""
    more = True
    while more and len(body) <= MAX_FORM_BYTES:
        message: Message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if len(body) > MAX_FORM_BYTES:
        return ""
    values = parse_qs(body.decode("utf-8", "replace")).get("token")
    return values[0] if values else ""
