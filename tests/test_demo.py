"""`foyer demo` on one command: embedded broker, hub, demo brands — even when its ports are busy."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.factories import HubClient, Proc, python_cmd, wait_for

pytestmark = pytest.mark.e2e


def test_demo_starts_on_other_ports_when_busy_and_answers_in_french_and_english(tmp_path: Path) -> None:
    with socket.socket() as busy_http, socket.socket() as busy_mqtt:
        busy_http.bind(("127.0.0.1", 0))
        busy_http.listen()
        busy_mqtt.bind(("127.0.0.1", 0))
        busy_mqtt.listen()
        http_port = busy_http.getsockname()[1]
        mqtt_port = busy_mqtt.getsockname()[1]
        demo = Proc("demo", python_cmd("demo", "--port", str(http_port), "--broker-port", str(mqtt_port),
                                       "--data-dir", str(tmp_path / "demo")), tmp_path / "demo.log",
                    env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
        demo.start()
        try:
            banner = wait_for(lambda: "Foyer demo is running" in demo.output() and demo.output(), 30,
                              "the demo banner")
            moved = re.search(r"hub HTTP: port \d+ is busy, using (\d+) instead", banner)
            assert moved, banner
            assert re.search(r"MQTT broker: port \d+ is busy, using \d+ instead", banner), banner
            url = f"http://127.0.0.1:{moved.group(1)}"
            tokens = json.loads((tmp_path / "config" / "foyer" / "tokens.json").read_text())
            client = HubClient(url, token=tokens[url])  # the demo paired this user's terminal
            wait_for(lambda: all(b["online"] for b in client.http.get("/api/brands").json()
                                 if b["opted_in"]), 30, "the demo brands online")
            opted = {b["id"] for b in client.http.get("/api/brands").json() if b["opted_in"]}
            assert opted == {"sportissimo", "energie_claire"}
            fr = client.send("Où en est ma commande Sportissimo 4821 ?").json()
            assert fr["brand"] == "sportissimo"
            answer = client.wait_reply(fr["conversation"], timeout=20)[0]["text"]
            assert "4821" in answer
            en = client.send("Énergie Claire: please explain my bill, customer EC-100234").json()
            assert en["brand"] == "energie_claire"
            reply = client.wait_reply(en["conversation"], timeout=20)[0]
            assert reply["lang"] == "en"
            assert "€" in reply["text"] or "EUR" in reply["text"]
            client.close()
        finally:
            demo.stop()
    # The demo's brand processes stopped with it (none left behind).
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True,
                               check=False)
    assert leftovers.stdout.strip() == "", "the demo left brand processes running"
