"""The dashboard at ``GET /``: a static page that draws the admin API's data in the browser.

Sign-in: the page needs a token with the viewer role, like the API. It is read from the
``Authorization: Bearer`` header or the ``travi_token`` cookie. A browser gets the cookie from
the sign-in form (``POST /login``) or by opening ``/?token=<token>`` once, which sets the
cookie and redirects to ``/`` so the token leaves the address bar. The cookie is HttpOnly and
SameSite=Strict, so other sites cannot send it along with their requests. ``GET /logout``
clears it.

The page's assets are served from this package under ``/dashboard/assets/``; nothing is loaded
from the internet.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from shared.auth import Authenticator
from shared.metrics import HTTP_REJECTED
from shared.service import ServiceContext

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
COOKIE = "travi_token"
COOKIE_MAX_AGE_SECONDS = 8 * 3600
MAX_LOGIN_BODY_BYTES = 4096


def _request_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.cookies.get(COOKIE, "").strip()


def _viewer(auth: Authenticator, token: str) -> bool:
    principal = auth.authenticate(token) if token else None
    return principal is not None and principal.can("viewer")


def login_page(message: str = "", status_code: int = status.HTTP_401_UNAUTHORIZED) -> HTMLResponse:
    """Return the sign-in form, with ``message`` above it when set."""
    template = (STATIC_DIR / "login.html").read_text(encoding="utf-8")
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(template.replace("<!--MESSAGE-->", notice), status_code=status_code)


def _signed_in(token: str) -> RedirectResponse:
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        path="/",
    )
    return response


def dashboard_router(context: ServiceContext) -> APIRouter:
    """Return the routes of the dashboard page, its sign-in and its assets."""
    router = APIRouter(include_in_schema=False)
    auth = context.auth

    @router.get("/")
    async def dashboard(request: Request, token: str | None = None) -> Response:
        if token is not None:
            if _viewer(auth, token.strip()):
                return _signed_in(token.strip())
            HTTP_REJECTED.labels(reason="invalid_token").inc()
            return login_page("The token in the address is invalid or lacks the viewer role.")
        current = _request_token(request)
        if not current:
            return login_page()
        if not _viewer(auth, current):
            HTTP_REJECTED.labels(reason="invalid_token").inc()
            response = login_page("Your token is invalid or lacks the viewer role: sign in again.")
            response.delete_cookie(COOKIE, path="/")
            return response
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_LOGIN_BODY_BYTES:
            return login_page("The sign-in form was too large.", status.HTTP_400_BAD_REQUEST)
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        token = (fields.get("token") or [""])[0].strip()
        if not token:
            return login_page("Enter a token.", status.HTTP_400_BAD_REQUEST)
        if not _viewer(auth, token):
            HTTP_REJECTED.labels(reason="invalid_token").inc()
            return login_page("That token is invalid or lacks the viewer role.")
        return _signed_in(token)

    @router.get("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/dashboard/assets/{name}")
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard asset named {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=media_type)

    return router
