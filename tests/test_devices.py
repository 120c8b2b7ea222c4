"""Pairing codes and device tokens, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.errors import PairingFailed, Unauthorized
from hub.store import Store


def test_a_code_pairs_once_and_tokens_are_not_stored_in_clear(tmp_path: Path) -> None:
    with Store(tmp_path / "hub.db") as store:
        code = store.devices.create_code("admin")
        device, token = store.devices.pair(code.lower().replace("-", " "), "  Téléphone de Léa  ")
        assert (device.role, device.name) == ("admin", "Téléphone de Léa")
        assert store.devices.authenticate(token).id == device.id
        with pytest.raises(PairingFailed, match="already used"):
            store.devices.pair(code, "again")
    dump = "\n".join(sqlite3.connect(tmp_path / "hub.db").iterdump())
    assert token not in dump
    assert code.replace("-", "") not in dump


def test_expired_codes_and_unknown_or_revoked_tokens_are_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "hub.db") as store:
        with pytest.raises(PairingFailed, match="expired"):
            store.devices.pair(store.devices.create_code(ttl_ms=-1), "late")
        with pytest.raises(Unauthorized, match="needs a device token"):
            store.devices.authenticate(None)
        with pytest.raises(Unauthorized, match="not known"):
            store.devices.authenticate("forged")
        device, token = store.devices.pair(store.devices.create_code(), "tablet")
        assert store.devices.revoke(device.id)
        assert not store.devices.revoke(device.id)
        with pytest.raises(Unauthorized, match="revoked"):
            store.devices.authenticate(token)
