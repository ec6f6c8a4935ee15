"""The dashboard's sign-in cookie reads; changes need the bearer header.

Browsers send a SameSite=Strict cookie with requests from every port of the same host, so a
page on another local port could otherwise post with an operator's cookie.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from shared.auth import Authenticator

OPERATOR_TOKEN = "operator-token-for-the-cookie-test-0123"


def make_client(cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    auth = Authenticator({OPERATOR_TOKEN: SecretStr("operator:alice")})
    app = FastAPI()

    @app.get("/read", dependencies=[auth.require("viewer")])
    def read() -> dict[str, str]:
        return {"ok": "read"}

    @app.post("/change", dependencies=[auth.require("operator")])
    def change() -> dict[str, str]:
        return {"ok": "changed"}

    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", cookies=cookies)


async def test_cookie_allows_reads() -> None:
    async with make_client({"travi_token": OPERATOR_TOKEN}) as client:
        response = await client.get("/read")

    assert response.status_code == 200


async def test_cookie_rejected_for_changes() -> None:
    async with make_client({"travi_token": OPERATOR_TOKEN}) as client:
        response = await client.post("/change")

    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_bearer_header_allows_changes() -> None:
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with make_client() as client:
        response = await client.post("/change", headers=headers)

    assert response.status_code == 200
