"""Household devices: one-time pairing codes, then revocable device tokens with a role.

A new client (phone, terminal, web browser) gets access with a one-time code
the hub shows (``foyer pair`` on the hub itself, or an admin device's
``POST /api/pairing-codes``). Pairing returns a device token; only its SHA-256
is stored, so a copy of the database does not hold usable tokens. Roles:
``admin`` (opt-ins, consents, erasure, devices) and ``member`` (talk, read).
Revoking a device takes effect on its next request: every request looks the
token up.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Literal

from hub.errors import PairingFailed, Unauthorized
from hub.protocol import new_id, now_ms
from hub.sqlite import atomic

__all__ = ["CODE_ALPHABET", "Device", "Devices", "Role"]

Role = Literal["admin", "member"]
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed on a phone
CODE_TTL_MS = 10 * 60 * 1000
MAX_FAILURES = 10  # failed pairings per window before pairing pauses
FAILURE_WINDOW_MS = 10 * 60 * 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS pairing_codes (
    code_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS pairing_failures (at INTEGER NOT NULL);
"""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _normalize_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    role: Role
    created_at: int
    last_seen_at: int | None
    revoked_at: int | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Devices:
    """The ``devices`` and ``pairing_codes`` tables of the hub's database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.executescript(SCHEMA)

    def create_code(self, role: Role = "member", ttl_ms: int = CODE_TTL_MS) -> str:
        """A fresh one-time code like ``K7QM-2XPA`` (40 bits), valid ``ttl_ms``."""
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
        now = now_ms()
        self._conn.execute(
            "INSERT INTO pairing_codes (code_hash, role, created_at, expires_at) VALUES (?,?,?,?)",
            (_digest(raw), role, now, now + ttl_ms),
        )
        return f"{raw[:4]}-{raw[4:]}"

    def pair(self, code: str, name: str) -> tuple[Device, str]:
        """Trade a valid code for a new device and its token (shown once, never stored)."""
        now = now_ms()
        recent = self._conn.execute(
            "SELECT COUNT(*) FROM pairing_failures WHERE at > ?", (now - FAILURE_WINDOW_MS,)
        ).fetchone()[0]
        if recent >= MAX_FAILURES:
            raise PairingFailed("too many wrong pairing codes: pairing is paused for a few minutes")
        with atomic(self._conn):
            row = self._conn.execute(
                "SELECT role, expires_at, used_at FROM pairing_codes WHERE code_hash = ?",
                (_digest(_normalize_code(code)),),
            ).fetchone()
            problem = (
                "this pairing code is not valid"
                if row is None
                else "this pairing code was already used"
                if row["used_at"] is not None
                else "this pairing code has expired"
                if row["expires_at"] < now
                else None
            )
            if problem is not None:
                self._conn.execute("INSERT INTO pairing_failures (at) VALUES (?)", (now,))
            else:
                self._conn.execute(
                    "UPDATE pairing_codes SET used_at = ? WHERE code_hash = ?",
                    (now, _digest(_normalize_code(code))),
                )
                token = secrets.token_urlsafe(32)
                device = Device(new_id(), name.strip()[:60] or "appareil", row["role"], now, None, None)
                self._conn.execute(
                    "INSERT INTO devices (id, name, role, token_hash, created_at) VALUES (?,?,?,?,?)",
                    (device.id, device.name, device.role, _digest(token), now),
                )
        if problem is not None:
            raise PairingFailed(f"{problem}: ask the hub for a new one (foyer pair)")
        return device, token

    def authenticate(self, token: str | None) -> Device:
        """The device holding ``token``; :class:`Unauthorized` if there is none or it was revoked."""
        if not token:
            raise Unauthorized("this request needs a device token: pair this device first")
        row = self._conn.execute("SELECT * FROM devices WHERE token_hash = ?", (_digest(token),)).fetchone()
        if row is None:
            raise Unauthorized("this device token is not known to the hub")
        device = self._device(row)
        if device.revoked_at is not None:
            raise Unauthorized("this device was revoked: pair it again")
        now = now_ms()
        if device.last_seen_at is None or now - device.last_seen_at > 60_000:
            self._conn.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", (now, device.id))
        return device

    def revoke(self, device_id: str) -> bool:
        return (
            self._conn.execute(
                "UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now_ms(), device_id),
            ).rowcount
            > 0
        )

    def list(self) -> list[Device]:
        rows = self._conn.execute("SELECT * FROM devices ORDER BY created_at").fetchall()
        return [self._device(r) for r in rows]

    @staticmethod
    def _device(row: sqlite3.Row) -> Device:
        return Device(
            row["id"], row["name"], row["role"], row["created_at"], row["last_seen_at"], row["revoked_at"]
        )
