"""Bearer-token authentication with roles, as a FastAPI dependency.

Roles: ``viewer`` reads, ``producer`` sends metrics and alerts, ``operator`` does everything a
viewer and a producer can and also operates rollbacks. Tokens are compared in constant time and
never logged. The actor recorded for a request is the token's name, or its role and a short
fingerprint when it has none.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr

from shared.errors import ConfigurationError
from shared.metrics import HTTP_REJECTED

logger = logging.getLogger(__name__)

ROLES = ("viewer", "producer", "operator")
GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "producer": frozenset({"producer"}),
    "operator": frozenset({"viewer", "producer", "operator"}),
}
TOKEN_FILE = "token"
# Methods that accept the dashboard's sign-in cookie in place of the bearer header. Browsers
# send a SameSite cookie with requests from every port of the same host, so a page served on
# another local port could otherwise change plans with an operator's cookie.
COOKIE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Principal:
    """The sender of a request: a display name for the audit trail and a role."""

    name: str
    role: str

    def can(self, role: str) -> bool:
        """Return whether this principal has ``role``."""
        return role in GRANTS[self.role]


class Authenticator:
    """Maps bearer tokens to principals."""

    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for token, value in tokens.items():
            role, _, name = value.get_secret_value().partition(":")
            if role not in ROLES:
                raise ConfigurationError(
                    f"invalid role {role!r} in TRAVI_TOKENS: use one of {', '.join(ROLES)}, "
                    "optionally followed by ':name'"
                )
            digest = hashlib.sha256(token.encode()).digest()
            self._by_digest[digest] = Principal(name or f"{role}-{digest.hex()[:8]}", role)

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal of ``token``, or None when it is unknown."""
        digest = hashlib.sha256(token.encode()).digest()
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def require(self, role: str) -> Callable[..., Principal]:
        """Return a dependency that admits principals holding ``role``: 401 or 403 otherwise."""

        def dependency(request: Request) -> Principal:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if (scheme.lower() != "bearer" or not token) and request.method in COOKIE_METHODS:
                token = request.cookies.get("travi_token", "")
            if not token:
                HTTP_REJECTED.labels(reason="missing_token").inc()
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "missing bearer token: send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = self.authenticate(token.strip())
            if principal is None:
                HTTP_REJECTED.labels(reason="invalid_token").inc()
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "invalid bearer token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not principal.can(role):
                HTTP_REJECTED.labels(reason="forbidden").inc()
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"role {principal.role!r} may not do this: it needs the {role!r} role",
                )
            return principal

        return Depends(dependency)


def load_or_create_operator_token(state_dir: Path) -> tuple[str, bool]:
    """Return the embedded run's operator token and whether it was created now.

    The token lives in ``<state_dir>/token`` with mode 0600.
    """
    path = state_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token, True
