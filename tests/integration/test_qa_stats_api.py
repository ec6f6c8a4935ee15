"""The stats API on query parameters at the edges of their types: a clear 4xx, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from services.runner import Runtime
from shared.settings import Settings
from tests.conftest import VIEWER

pytestmark = pytest.mark.nats


@pytest.fixture
async def stats_runtime(
    nats_server, make_settings: Callable[..., Settings], sqlite_url: str
) -> AsyncIterator[Runtime]:
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, ["stats"]) as runtime:
        yield runtime


@pytest.mark.parametrize(
    "query",
    [
        "since=9999-12-31T23:59:59Z",
        "since=0001-01-01T00:00:00%2B14:00",
        "until=0001-01-01T05:00:00%2B06:00",
        "since=9999-12-31T20:00:00-08:00",
    ],
)
async def test_stats_out_of_range_times_rejected(stats_runtime, query: str) -> None:
    async with httpx.AsyncClient(base_url=stats_runtime.base_url, headers=VIEWER) as http:
        response = await http.get(f"/api/admin/rollback/stats?{query}")

    assert response.status_code == 400
    assert "invalid" in response.json()["detail"]


async def test_stats_extreme_valid_range(stats_runtime) -> None:
    query = "since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999999Z"
    async with httpx.AsyncClient(base_url=stats_runtime.base_url, headers=VIEWER) as http:
        response = await http.get(f"/api/admin/rollback/stats?{query}")

    assert response.status_code == 200
    assert response.json()["total"] == 0


async def test_list_huge_offset_rejected(stats_runtime) -> None:
    async with httpx.AsyncClient(base_url=stats_runtime.base_url, headers=VIEWER) as http:
        response = await http.get("/api/admin/rollbacks?offset=100000000000000000000")
        largest = await http.get(f"/api/admin/rollbacks?offset={2**63 - 1}")

    assert response.status_code == 422
    assert largest.status_code == 200
    assert largest.json()["items"] == []
