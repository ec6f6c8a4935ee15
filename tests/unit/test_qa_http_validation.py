"""Request validation errors of the composed HTTP app: the usual 422 body, and a count."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import BaseModel

from services.runner import _error_handlers


class Body(BaseModel):
    service: str


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("travi_http_rejected_total", {"reason": reason}) or 0.0


async def test_invalid_body_is_422_and_counted():
    app = FastAPI()
    _error_handlers(app)

    @app.post("/items")
    async def create(body: Body) -> dict[str, str]:
        return {"service": body.service}

    before = rejected("invalid_request")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post("/items", json={})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "service"]
    assert rejected("invalid_request") == before + 1
