"""`foyer hub` with its embedded broker: accounts for every identity, no anonymous clients."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import pair_device
from tests.factories import HubClient, Proc, free_port, port_open, python_cmd, wait_for

pytestmark = pytest.mark.e2e


def _connect(port: int, username: str | None, password: str | None, client_id: str) -> int:
    """The CONNACK reason code paho gets (0 = accepted)."""
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: codes, 10, "a CONNACK")
    finally:
        client.loop_stop()
        client.disconnect()
    return codes[0]


def test_the_hubs_embedded_broker_refuses_anonymous_clients_and_serves_accounts(tmp_path: Path) -> None:
    mqtt_port, http_port = free_port(), free_port()
    data = tmp_path / "hub"
    hub = Proc("hub", python_cmd("hub", "--data-dir", str(data), "--port", str(http_port), "--hub-id",
                                 "maison", "--opt-in", "instant"),
               tmp_path / "hub.log", env={"FOYER_EMBEDDED_BROKER_PORT": str(mqtt_port)}).start()
    brand: Proc | None = None
    client = HubClient(f"http://127.0.0.1:{http_port}")
    try:
        wait_for(lambda: client.health()["broker_connected"], 20, "the hub on its embedded broker")
        assert port_open(mqtt_port)
        secrets = json.loads((data / "broker" / "secrets.json").read_text())
        assert (data / "broker" / "secrets.json").stat().st_mode & 0o777 == 0o600
        assert _connect(mqtt_port, None, None, "nobody") != 0  # anonymous: refused
        assert _connect(mqtt_port, "brand-instant", "wrong", "foyer-brand-instant") != 0
        assert _connect(mqtt_port, "brand-instant", secrets["brand-instant"], "foyer-brand-sportissimo") != 0
        password = secrets["brand-instant"]
        brand = Proc("brand", python_cmd("brand", "run", "instant", "--broker",
                                         f"mqtt://brand-instant:{password}@127.0.0.1:{mqtt_port}",
                                         "--state", str(tmp_path / "instant.db")),
                     tmp_path / "brand.log").start()
        client.authorize(pair_device(data, client))
        client.wait_online("instant")
        sent = client.send("avec un compte", brand="instant").json()
        assert client.wait_reply(sent["conversation"])[0]["text"] == "reçu #1: avec un compte"
    finally:
        client.close()
        if brand is not None:
            brand.stop()
        hub.stop()
