"""The HTTP client the CLI uses to reach a running TRAVI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from shared.errors import ConfigurationError, TraviError
from shared.settings import Settings

RUNTIME_FILE = "runtime.json"


class ApiError(TraviError):
    """An error status returned by the API."""

    def __init__(self, status: int, detail: object) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


def read_runtime(state_dir: Path) -> dict[str, Any]:
    """Return what a running ``travi up`` wrote about itself, or an empty dict."""
    try:
        return json.loads((state_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return {}


class ApiClient:
    """Calls the admin API with the configured token."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        runtime = read_runtime(settings.state_dir)
        self.base_url = (settings.api_url or runtime.get("api_url") or "http://127.0.0.1:8080").rstrip("/")
        token = settings.token.get_secret_value() if settings.token else None
        if token is None:
            token_file = settings.state_dir / "token"
            if token_file.exists():
                token = token_file.read_text().strip()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return the decoded JSON body (or text for non-JSON)."""
        try:
            response = httpx.request(
                method, self.base_url + path, headers=self._headers, timeout=self._timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise ConfigurationError(
                f"cannot reach TRAVI at {self.base_url} ({exc}): start it with 'travi up' "
                "or set TRAVI_API_URL"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)
