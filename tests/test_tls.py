"""`--broker mqtts://…` with a CA file: the hub and a brand talk through Mosquitto over TLS."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Broker, pair_device, start_broker
from tests.factories import HubClient, Proc, free_port, python_cmd, wait_for

pytestmark = pytest.mark.e2e


def _make_certs(tmp: Path) -> Path:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl, as an admin would)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Foyer test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "san.ext", "-out", "server.crt")
    return tmp


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, int, Path]]:
    certs = _make_certs(tmp_path)
    tls_port = free_port()
    extra = (f"listener {tls_port} 127.0.0.1\ncafile {certs / 'ca.crt'}\n"
             f"certfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n")
    broker = start_broker("mosquitto", tmp_path, extra)
    yield broker, tls_port, certs
    broker.proc.stop()


def test_hub_and_brand_over_tls(tls_broker: tuple[Broker, int, Path], tmp_path: Path) -> None:
    _, tls_port, certs = tls_broker
    url = f"mqtts://127.0.0.1:{tls_port}"
    ca = str(certs / "ca.crt")
    http_port = free_port()
    hub = Proc("hub", python_cmd("hub", "--broker", url, "--broker-ca", ca, "--data-dir",
                                 str(tmp_path / "hub"), "--port", str(http_port), "--hub-id", "tls-home",
                                 "--opt-in", "instant"), tmp_path / "hub.log").start()
    brand = Proc("brand", python_cmd("brand", "run", "instant", "--broker", url, "--broker-ca", ca,
                                     "--state", str(tmp_path / "instant.db")), tmp_path / "brand.log").start()
    client = HubClient(f"http://127.0.0.1:{http_port}")
    try:
        wait_for(lambda: client.health()["broker_connected"], 20, "the hub on TLS")
        client.authorize(pair_device(tmp_path / "hub", client))
        client.wait_online("instant")
        sent = client.send("par TLS", brand="instant").json()
        assert client.wait_reply(sent["conversation"])[0]["text"] == "reçu #1: par TLS"
    finally:
        client.close()
        brand.stop()
        hub.stop()


def test_tls_without_the_right_ca_does_not_connect(tls_broker: tuple[Broker, int, Path],
                                                   tmp_path: Path) -> None:
    _, tls_port, _ = tls_broker
    http_port = free_port()
    hub = Proc("hub", python_cmd("hub", "--broker", f"mqtts://127.0.0.1:{tls_port}", "--data-dir",
                                 str(tmp_path / "hub"), "--port", str(http_port)),
               tmp_path / "hub.log").start()
    client = HubClient(f"http://127.0.0.1:{http_port}")
    try:
        wait_for(lambda: client.health()["status"] == "ok", 20, "the hub's API")
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in hub.output(), 20, "a certificate error in the log")
        assert client.health()["broker_connected"] is False
    finally:
        client.close()
        hub.stop()
