"""API keys and roles: ``operator`` reads the operational picture, ``admin`` also manages keys.

Keys come from two places: the environment (``CITYEYE_API_KEYS="operator:KEY,admin:KEY"``, for
bootstrapping and for secrets managers) and the database (created by an admin through the API,
shown once, stored as SHA-256 only). A key is 32 random bytes, so a plain fast hash is as safe
as a slow password hash and keeps the check cheap on every request.

A request names its key in ``X-API-Key``, ``Authorization: Bearer <key>``, or — for browser
``EventSource``/``WebSocket``, which cannot set headers — the ``api_key`` query parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from cityeye.api.store import Store

ENV_API_KEYS = "CITYEYE_API_KEYS"
MIN_KEY_LENGTH = 16
KEY_CACHE_S = 5.0
"""Keys stored by another replica (or revoked there) take effect here within this many seconds."""


class Role(StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"


RANK = {Role.OPERATOR: 1, Role.ADMIN: 2}


class KeyConfigError(ValueError):
    """``CITYEYE_API_KEYS`` is malformed; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the role and a name for logs (never the key)."""

    role: Role
    name: str

    def allows(self, needed: Role) -> bool:
        return RANK[self.role] >= RANK[needed]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ce_" + secrets.token_urlsafe(32)


def parse_env_keys(value: str | None) -> dict[str, Principal]:
    """``role:key[,role:key...]`` -> key hash -> principal."""
    out: dict[str, Principal] = {}
    if not value:
        return out
    for i, item in enumerate(p.strip() for p in value.split(",")):
        if not item:
            continue
        role, sep, key = item.partition(":")
        if not sep or role not in Role.__members__.values():
            raise KeyConfigError(
                f"{ENV_API_KEYS} entry {i + 1} must be 'operator:KEY' or 'admin:KEY' (comma-separated), "
                f"got {role!r} as the role"
            )
        if len(key) < MIN_KEY_LENGTH:
            raise KeyConfigError(
                f"{ENV_API_KEYS} entry {i + 1} ({role}): the key is shorter than {MIN_KEY_LENGTH} "
                "characters; use a random one, e.g. from python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        out[hash_key(key)] = Principal(Role(role), f"env:{role}:{i + 1}")
    return out


class KeyRing:
    """Resolves keys to principals from the environment and the store (cached briefly)."""

    def __init__(self, store: Store, env_value: str | None = None) -> None:
        self.store = store
        self.env = parse_env_keys(os.environ.get(ENV_API_KEYS) if env_value is None else env_value)
        self._lock = threading.Lock()
        self._stored: dict[str, Principal] = {}
        self._loaded_at = -1e18

    def _refresh(self, force: bool = False) -> dict[str, Principal]:
        with self._lock:
            if force or time.monotonic() - self._loaded_at > KEY_CACHE_S:
                self._stored = {
                    k.key_hash: Principal(Role(k.role), f"key:{k.id}:{k.name}")
                    for k in self.store.api_keys(include_revoked=False)
                }
                self._loaded_at = time.monotonic()
            return self._stored

    def invalidate(self) -> None:
        self._refresh(force=True)

    def any_keys(self) -> bool:
        return bool(self.env) or bool(self._refresh())

    def resolve(self, key: str) -> Principal | None:
        h = hash_key(key)
        for table in (self.env, self._refresh()):
            for known, who in table.items():
                if hmac.compare_digest(known, h):
                    return who
        return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
