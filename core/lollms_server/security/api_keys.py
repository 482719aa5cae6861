"""API keys: created with a random secret shown once, stored as salted hashes, checked in
constant time. A key reads `lollms_<id>_<secret>`; the id is public (audit, listings)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from ..storage import Store
from .principal import ROLES, Principal, Role, split_entry

KEY_FORMAT = re.compile(r"^lollms_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_DUMMY_SALT = secrets.token_bytes(16)
BY_ID = "SELECT * FROM api_keys WHERE id = ?"


def _digest(salt: bytes, secret: str) -> bytes:
    # keys carry 256 random bits, so one salted SHA-256 resists brute force without the
    # per-request cost of a password KDF
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


@dataclass(frozen=True)
class KeyRecord:
    """A stored key without its secret."""

    id: str
    name: str
    role: Role
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    allowed_bindings: frozenset[str] | None = None
    allowed_models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    def status(self, now: float | None = None) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or time.time()):
            return "expired"
        return "active"

    def principal(self, client: str) -> Principal:
        """The Principal this key authenticates."""
        return Principal(
            role=self.role,
            key_id=self.id,
            name=self.name,
            client=client,
            allowed_bindings=self.allowed_bindings,
            allowed_models=self.allowed_models,
            rpm=self.rpm,
            tpm=self.tpm,
            max_concurrent=self.max_concurrent,
        )

    def to_dict(self) -> dict[str, Any]:
        """Public description (never the secret or its hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "status": self.status(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "allowed_bindings": sorted(self.allowed_bindings) if self.allowed_bindings else None,
            "allowed_models": sorted(self.allowed_models) if self.allowed_models else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
        }


def _names(value: str | None) -> frozenset[str] | None:
    return frozenset(json.loads(value)) if value else None


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        allowed_bindings=_names(row["allowed_bindings"]),
        allowed_models=_names(row["allowed_models"]),
        rpm=row["rpm"],
        tpm=row["tpm"],
        max_concurrent=row["max_concurrent"],
    )


ADMITS_NOTHING = "an empty list would admit nothing; leave the field out (or null) for no limit"


def _check_limits(limits: dict[str, int | None]) -> None:
    """InvalidRequest for a limit under 1: the CLI and the API refuse the same values (0 never
    meant "no limit", and a negative limit refused every request)."""
    for param, value in limits.items():
        if value is not None and value < 1:
            raise InvalidRequest(
                f"{param} must be at least 1 (got {value}); leave it out for no limit", param=param
            )


class KeyStore:
    """Create, list, revoke and verify API keys in the database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        name: str,
        role: Role,
        *,
        expires_at: float | None = None,
        allowed_bindings: Iterable[str] | None = None,
        allowed_models: Iterable[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Make a key; return (the plaintext key, shown once, and its record)."""
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", param="role")
        if not name.strip():
            raise InvalidRequest("a key needs a name", param="name")
        if not name.isprintable():  # it is printed by `keys list` and shown on the pages
            raise InvalidRequest("a key name cannot hold control characters", param="name")
        key_id, secret, salt = (
            secrets.token_hex(6),
            secrets.token_urlsafe(32),
            secrets.token_bytes(16),
        )
        bindings = sorted(allowed_bindings) if allowed_bindings is not None else None
        models = sorted(allowed_models) if allowed_models is not None else None
        for param, names in (("allowed_bindings", bindings), ("allowed_models", models)):
            if names == []:
                raise InvalidRequest(f"{param}: {ADMITS_NOTHING}", param=param)
        _check_limits({"rpm": rpm, "tpm": tpm, "max_concurrent": max_concurrent})
        malformed = [entry for entry in models or () if split_entry(entry) == ("", "")]
        if malformed:
            raise InvalidRequest(
                f"allowed_models entries are `<instance>/<model>`; got {', '.join(malformed)}",
                param="allowed_models",
            )
        await self.store.execute(
            "INSERT INTO api_keys(id, name, role, salt, hash, created_at, expires_at,"
            " allowed_bindings, allowed_models, rpm, tpm, max_concurrent)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key_id, name, role, salt, _digest(salt, secret), time.time(), expires_at,
                json.dumps(bindings) if bindings else None,
                json.dumps(models) if models else None,
                rpm, tpm, max_concurrent,
            ),
        )  # fmt: skip
        return f"lollms_{key_id}_{secret}", await self.get(key_id)

    async def refuse_first_admin(self, role: str) -> None:
        """Forbidden for an admin key while no active admin key exists: over HTTP (local
        access included) only an admin key holder makes admin keys; the first comes from the
        CLI (`lollms-server keys create --role admin`)."""
        if role == "admin" and not any(
            k.role == "admin" and k.status() == "active" for k in await self.list()
        ):
            raise Forbidden(
                "the first admin key can only be made with the CLI: "
                "`lollms-server keys create --name <name> --role admin`",
                param="role",
            )

    async def get(self, key_id: str) -> KeyRecord:
        """One key's record, or NotFound."""
        rows = await self.store.query(BY_ID, (key_id,))
        if not rows:
            raise NotFound(f"no API key with id {key_id!r}", param="key_id")
        return _record(rows[0])

    async def list(self) -> list[KeyRecord]:
        """Every key, newest first."""
        rows = await self.store.query("SELECT * FROM api_keys ORDER BY created_at DESC")
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (idempotent); NotFound if it never existed."""
        await self.get(key_id)
        await self.store.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), key_id),
        )
        return await self.get(key_id)

    async def verify(self, presented: str) -> KeyRecord:
        """The record of a valid, active key; Unauthorized otherwise (constant-time check)."""
        match = KEY_FORMAT.match(presented)
        key_id = match.group("id") if match else ""
        secret = match.group("secret") if match else "x" * 43
        rows = await self.store.query(BY_ID, (key_id,)) if match else []
        salt, expected = (_DUMMY_SALT, b"\0" * 32)
        if rows:
            salt, expected = bytes(rows[0]["salt"]), bytes(rows[0]["hash"])
        if not hmac.compare_digest(_digest(salt, secret), expected) or not rows:
            raise Unauthorized("invalid API key")
        record = _record(rows[0])
        status = record.status()
        if status != "active":
            raise Unauthorized(f"this API key is {status}", details={"key_id": record.id})
        return record
