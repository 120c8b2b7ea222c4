"""Broker identities and ACLs (hub/acl.py) against a real Mosquitto started with the generated files.

The network: hub ``home1`` opted into brand ``alpha`` only, hub ``home2`` into
``beta`` only. Each forbidden action is followed by an allowed one to the same
observer (a barrier): Mosquitto handles one client's packets in order, so when
the allowed message has arrived, a leaked one would have arrived before it.
SUBACK is never trusted (Mosquitto grants subscriptions the ACL then filters):
the tests check what arrives. A test-only ``spy`` account that may read
everything is appended to the generated files, to see whether a forbidden
PUBLISH got into the broker at all, whatever the subscribers may read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.acl import (
    HubEntry,
    Network,
    TlsFiles,
    acl_rules,
    hash_password,
    main,
    network_from_hub_db,
    render_acl,
    render_mosquitto_conf,
    verify_password,
    write_mosquitto_config,
)
from hub.protocol import Manifest
from hub.store import Store
from tests.factories import Proc, free_port, port_open, wait_for

pytestmark = pytest.mark.e2e

NETWORK = Network(
    hubs={"home1": HubEntry(opt_in=["alpha"]), "home2": HubEntry(opt_in=["beta"])},
    brands=["alpha", "beta"],
)
SPY = "spy"
SPY_PASSWORD = "spy-password-for-tests"
SETTLE = 0.3  # extra grace after a barrier message, on top of the ordering guarantee


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )
    if found is None:
        if os.environ.get("FOYER_REQUIRE_MOSQUITTO") == "1":
            pytest.fail(f"FOYER_REQUIRE_MOSQUITTO=1 but {name} is not installed")
        pytest.skip(f"{name} is not installed (set FOYER_REQUIRE_MOSQUITTO=1 to fail instead)")
    return found


# --- a Mosquitto started with the generated files ------------------------------------------------


@dataclass
class SecuredBroker:
    port: int
    proc: Proc
    secrets: dict[str, str]
    files: dict[str, Path]


def start_secured_broker(tmp_path: Path, network: Network, tls: TlsFiles | None = None,
                         spy: bool = True) -> SecuredBroker:
    binary = _binary("mosquitto")
    port = free_port()
    # Started as root (CI), Mosquitto would drop to the "mosquitto" user, who cannot read the
    # 0600 files in the test's private temp dir; ignored when not started as root.
    files = write_mosquitto_config(network, tmp_path / "broker", port, tls, host="127.0.0.1", user="root")
    if spy:
        with files["acl"].open("a") as acl:
            acl.write(f"\n# test only\nuser {SPY}\ntopic read #\n")
        with files["passwd"].open("a") as passwd:
            passwd.write(f"{SPY}:{hash_password(SPY_PASSWORD)}\n")
    proc = Proc("mosquitto", [binary, "-c", str(files["conf"])], tmp_path / "mosquitto.log").start()
    try:
        wait_for(lambda: proc.alive and port_open(port), 15, f"mosquitto on port {port}")
    except TimeoutError as err:
        proc.stop()
        raise TimeoutError(f"{err}; its log:\n{proc.output()[-2000:]}") from err
    secrets = json.loads(files["secrets"].read_text())
    return SecuredBroker(port, proc, secrets, files)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    started = start_secured_broker(tmp_path, NETWORK)
    yield started
    started.proc.stop()


# --- a paho 2.x client with bounded waits --------------------------------------------------------


class Client:
    """One MQTT 3.1.1 connection; records CONNACK, disconnects and every message received."""

    def __init__(self, port: int, username: str | None, password: str | None, *, client_id: str = "",
                 clean_session: bool = True, ca: Path | None = None) -> None:
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.connack: Any = None
        self.session_present = False
        self.disconnects = 0
        self.received: list[tuple[str, bytes, bool]] = []
        self.subacks: dict[int, threading.Event] = {}
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                clean_session=clean_session, protocol=mqtt.MQTTv311)
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        if ca is not None:
            self.mqtt.tls_set(ca_certs=str(ca))
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.connect("127.0.0.1", port, keepalive=30)
        self.mqtt.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise TimeoutError(f"no CONNACK for {username!r}")

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        if reason.is_failure:
            self.mqtt.disconnect()  # no automatic retries: one refused attempt per Client
        self.connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        with self.lock:
            self.disconnects += 1

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.lock:
            self.received.append((message.topic, message.payload, bool(message.retain)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, _codes: Any, _p: Any) -> None:
        self.subacks.setdefault(mid, threading.Event()).set()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, *topics: str) -> None:
        """Subscribe and wait for the SUBACK (which says nothing about what will arrive)."""
        result, mid = self.mqtt.subscribe([(t, 1) for t in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        assert self.subacks.setdefault(mid, threading.Event()).wait(5), f"no SUBACK for {topics}"

    def publish(self, topic: str, payload: bytes = b"x", retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK (Mosquitto acks a denied publish too)."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), f"no PUBACK for {topic}"

    def topics(self) -> set[str]:
        with self.lock:
            return {topic for topic, _, _ in self.received}

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.received if t == topic]

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5) -> None:
        wait_for(lambda: payload in self.payloads(topic), timeout, f"{payload!r} on {topic}")

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def connect(broker: SecuredBroker) -> Iterator[Callable[..., Client]]:
    """``connect("brand-alpha")`` logs in with the generated password; ``password=`` overrides it."""
    opened: list[Client] = []
    missing = object()

    def make(username: str | None, password: Any = missing, **options: Any) -> Client:
        if password is missing:
            password = SPY_PASSWORD if username == SPY else broker.secrets.get(username or "")
        client = Client(broker.port, username, password, **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def settle() -> None:
    time.sleep(SETTLE)


# --- generated files (no broker) -----------------------------------------------------------------


def test_acl_has_one_block_per_account_and_no_pattern(tmp_path: Path) -> None:
    text = render_acl(NETWORK)
    assert "pattern" not in text.replace("no 'pattern' lines", "")
    assert [line for line in text.splitlines() if line.startswith("user ")] == [
        "user hub-home1", "user hub-home2", "user brand-alpha", "user brand-beta"]
    assert acl_rules(NETWORK)["brand-alpha"] == [
        ("read", "foyer/v1/brand/alpha/from/+"),
        ("write", "foyer/v1/hub/home1/from/alpha"),
        ("readwrite", "foyer/v1/brand/alpha/status"),
        ("readwrite", "foyer/v1/brand/alpha/manifest"),
    ]
    assert acl_rules(NETWORK)["hub-home1"] == [
        ("write", "foyer/v1/brand/alpha/from/home1"),
        ("read", "foyer/v1/hub/home1/from/alpha"),
        ("read", "foyer/v1/brand/alpha/status"),
        ("read", "foyer/v1/brand/+/manifest"),
    ]
    # A hub and a brand with the same id are two accounts.
    same = Network(hubs={"acme": HubEntry(opt_in=["acme"])}, brands=["acme"])
    assert list(acl_rules(same)) == ["hub-acme", "brand-acme"]


def test_listener_options_come_after_the_listener_line(tmp_path: Path) -> None:
    conf = render_mosquitto_conf(passwd=tmp_path / "p", acl=tmp_path / "a", listener_port=8883,
                                 tls=TlsFiles(tmp_path / "c.crt", tmp_path / "c.key", tmp_path / "ca.crt"))
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    listener = lines.index("listener 8883")
    before = {line.split()[0] for line in lines[:listener]}
    # Any listener option before 'listener' makes Mosquitto open a second listener on 1883.
    assert not before & {"use_username_as_clientid", "cafile", "certfile", "keyfile", "protocol"}
    assert set(lines) >= {"allow_anonymous false", "use_username_as_clientid true",
                          "set_tcp_nodelay true", "max_packet_size 131072",
                          f"cafile {tmp_path / 'ca.crt'}", f"certfile {tmp_path / 'c.crt'}",
                          f"keyfile {tmp_path / 'c.key'}"}


def test_password_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run([_binary("mosquitto_passwd"), "-c", "-b", str(passwd), "someone", "s3cret"],
                   check=True, capture_output=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert verify_password("s3cret", theirs)
    assert not verify_password("s3cret!", theirs)
    ours = hash_password("s3cret")
    assert ours.split("$")[:3] == theirs.split("$")[:3]
    assert [len(p) for p in ours.split("$")[3:]] == [len(p) for p in theirs.split("$")[3:]]
    assert verify_password("s3cret", ours)


def test_files_are_private_and_passwords_survive_regeneration(tmp_path: Path) -> None:
    files = write_mosquitto_config(NETWORK, tmp_path / "out", 1884, None)
    assert set(files) == {"conf", "passwd", "acl", "secrets"}
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    first = json.loads(files["secrets"].read_text())
    assert set(first) == {"hub-home1", "hub-home2", "brand-alpha", "brand-beta"}
    assert len(set(first.values())) == 4
    hashes = dict(line.split(":", 1) for line in files["passwd"].read_text().splitlines())
    assert all(verify_password(first[user], hashes[user]) for user in first)

    smaller = Network(hubs={"home1": HubEntry(opt_in=["alpha"])}, brands=["alpha"])
    again = json.loads(write_mosquitto_config(smaller, tmp_path / "out", 1884)["secrets"].read_text())
    assert again == {"hub-home1": first["hub-home1"], "brand-alpha": first["brand-alpha"]}
    rotated = json.loads(
        write_mosquitto_config(smaller, tmp_path / "out", 1884, rotate=True)["secrets"].read_text())
    assert rotated.keys() == again.keys()
    assert not set(rotated.values()) & set(again.values())


def test_network_validation() -> None:
    with pytest.raises(ValueError, match="not listed"):
        Network(hubs={"home1": HubEntry(opt_in=["ghost"])}, brands=["alpha"])
    with pytest.raises(ValueError, match="not valid"):
        Network(hubs={}, brands=["Alpha!"])
    with pytest.raises(ValueError, match="opt_in"):
        Network.from_dict({"hubs": {"home1": ["alpha"]}, "brands": ["alpha"]})
    with pytest.raises(ValueError, match="only 'hubs' and 'brands'"):
        Network.from_dict({"hubs": {}, "brands": [], "extra": 1})


def _manifest(brand_id: str) -> Manifest:
    return Manifest.model_validate({"id": brand_id, "name": brand_id.title(),
                                    "description": {"fr": "Une marque.", "en": "A brand."}})


def test_network_from_hub_db(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    with Store(db) as store:
        for brand_id in ("alpha", "beta", "gamma"):
            store.upsert_manifest(_manifest(brand_id))
        store.set_opt_in("alpha", True)
        store.set_opt_in("gamma", True)
        store.set_meta("hub_id", "home1")
    network = network_from_hub_db(db)
    assert network == Network(hubs={"home1": HubEntry(opt_in=["alpha", "gamma"])},
                              brands=["alpha", "beta", "gamma"])
    assert network_from_hub_db(db, "home1") == network
    with pytest.raises(ValueError, match="belongs to hub 'home1'"):
        network_from_hub_db(db, "home9")
    with pytest.raises(ValueError, match="no such hub database"):
        network_from_hub_db(tmp_path / "missing.db", "home1")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    network_json = tmp_path / "network.json"
    network_json.write_text(json.dumps({"hubs": {"home1": {"opt_in": ["alpha"]}}, "brands": ["alpha"]}))
    assert main(["--out", str(tmp_path / "out"), "--network", str(network_json), "--port", "18830"]) == 0
    conf = (tmp_path / "out" / "mosquitto.conf").read_text()
    assert "listener 18830\n" in conf
    assert "mosquitto -c" in capsys.readouterr().out

    network_json.write_text(json.dumps({"hubs": {"home1": {"opt_in": ["ghost"]}}, "brands": []}))
    assert main(["--out", str(tmp_path / "bad"), "--network", str(network_json)]) == 2
    assert "ghost" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["--out", str(tmp_path / "bad"), "--network", str(network_json),
                 "--tls-cert", str(network_json)]) == 2
    assert "--tls-key" in capsys.readouterr().err


# --- against Mosquitto ---------------------------------------------------------------------------


def test_only_known_accounts_with_their_password_get_in(broker: SecuredBroker,
                                                        connect: Callable[..., Client]) -> None:
    for username in ("hub-home1", "hub-home2", "brand-alpha", "brand-beta"):
        assert connect(username).accepted, username  # Mosquitto accepts the pure-Python hashes
    refused = [
        connect(None, None),  # anonymous
        connect("brand-alpha", "wrong password"),
        connect("brand-alpha", broker.secrets["brand-beta"]),  # another account's password
        connect("alpha", broker.secrets["brand-alpha"]),  # the bare id is not a username
        connect("brand-gamma", "anything"),
    ]
    # Anonymous clients are refused twice over: allow_anonymous false, and
    # use_username_as_clientid refuses a client without a username.
    for client in refused:
        assert client.connack.is_failure
        assert str(client.connack) == "Not authorized"  # CONNACK return code 5 (MQTT 3.1.1)


def test_a_brand_reads_only_its_own_inbox(connect: Callable[..., Client]) -> None:
    alpha = connect("brand-alpha")
    beta = connect("brand-beta")
    home1 = connect("hub-home1")
    home2 = connect("hub-home2")
    alpha.subscribe("#", "foyer/#", "foyer/v1/brand/beta/from/+", "foyer/v1/brand/+/from/+",
                    "foyer/v1/hub/+/from/+", "foyer/v1/hub/home1/from/+", "foyer/v1/hub/home2/from/beta",
                    "$SYS/#", "foyer/v1/brand/alpha/from/+")
    beta.subscribe("foyer/v1/brand/beta/from/+")
    home1.subscribe("foyer/v1/hub/home1/from/alpha")
    home2.subscribe("foyer/v1/hub/home2/from/beta")

    home2.publish("foyer/v1/brand/beta/from/home2", b"home2 to beta")
    beta.publish("foyer/v1/hub/home2/from/beta", b"beta to home2")
    alpha.publish("foyer/v1/hub/home1/from/alpha", b"alpha to home1")  # alpha may not read it back
    beta.wait_for("foyer/v1/brand/beta/from/home2", b"home2 to beta")
    home2.wait_for("foyer/v1/hub/home2/from/beta", b"beta to home2")
    home1.wait_for("foyer/v1/hub/home1/from/alpha", b"alpha to home1")

    home1.publish("foyer/v1/brand/alpha/from/home1", b"home1 to alpha")  # the barrier
    alpha.wait_for("foyer/v1/brand/alpha/from/home1", b"home1 to alpha")
    settle()
    assert alpha.topics() == {"foyer/v1/brand/alpha/from/home1"}


def test_a_brand_cannot_write_as_another_or_to_a_home_that_did_not_opt_in(
        connect: Callable[..., Client]) -> None:
    spy = connect(SPY)
    spy.subscribe("#")
    alpha = connect("brand-alpha")
    home1 = connect("hub-home1")
    home2 = connect("hub-home2")
    beta = connect("brand-beta")
    home1.subscribe("foyer/v1/hub/home1/from/alpha")
    home2.subscribe("foyer/v1/hub/home2/from/beta")
    beta.subscribe("foyer/v1/brand/beta/from/+", "foyer/v1/brand/beta/status")

    forbidden = [
        "foyer/v1/hub/home2/from/beta",  # as beta
        "foyer/v1/hub/home2/from/alpha",  # home2 did not opt into alpha
        "foyer/v1/hub/home1/from/beta",  # as beta, to its own home
        "foyer/v1/brand/beta/from/home1",  # as a hub
        "foyer/v1/brand/alpha/from/home1",  # as a hub, into its own inbox
        "foyer/v1/brand/beta/status",  # beta's presence
        "foyer/v1/brand/beta/manifest",  # beta's directory entry
        "foyer/v1/other",
    ]
    for topic in forbidden:
        alpha.publish(topic, b"forged by alpha", retain=topic.endswith(("status", "manifest")))
    alpha.publish("foyer/v1/hub/home1/from/alpha", b"allowed")  # positive control and barrier
    home1.wait_for("foyer/v1/hub/home1/from/alpha", b"allowed")
    spy.wait_for("foyer/v1/hub/home1/from/alpha", b"allowed")
    settle()
    assert spy.topics() == {"foyer/v1/hub/home1/from/alpha"}, "a forbidden publish got into the broker"
    assert home2.received == []
    assert beta.received == []


def test_a_hub_writes_only_to_its_brands_and_reads_only_their_status(
        connect: Callable[..., Client]) -> None:
    spy = connect(SPY)
    spy.subscribe("#")
    alpha = connect("brand-alpha")
    beta = connect("brand-beta")
    alpha.publish("foyer/v1/brand/alpha/status", b"alpha online", retain=True)
    beta.publish("foyer/v1/brand/beta/status", b"beta online", retain=True)
    alpha.publish("foyer/v1/brand/alpha/manifest", b"alpha manifest", retain=True)
    beta.publish("foyer/v1/brand/beta/manifest", b"beta manifest", retain=True)
    spy.wait_for("foyer/v1/brand/beta/manifest", b"beta manifest")

    home1 = connect("hub-home1")
    home1.subscribe("#", "foyer/v1/brand/+/status", "foyer/v1/brand/beta/from/+",
                    "foyer/v1/hub/home2/from/+")
    for topic in ("foyer/v1/brand/beta/from/home1",  # not opted in
                  "foyer/v1/brand/alpha/from/home2",  # as another home
                  "foyer/v1/hub/home1/from/alpha",  # as a brand
                  "foyer/v1/brand/alpha/status"):  # the brand's presence
        home1.publish(topic, b"forged by home1")
    home1.publish("foyer/v1/brand/alpha/from/home1", b"allowed")
    spy.wait_for("foyer/v1/brand/alpha/from/home1", b"allowed")
    beta.publish("foyer/v1/hub/home2/from/beta", b"beta to home2")
    alpha.publish("foyer/v1/hub/home1/from/alpha", b"alpha to home1")  # the barrier for home1
    home1.wait_for("foyer/v1/hub/home1/from/alpha", b"alpha to home1")
    settle()
    assert not any(b"forged" in payload for _, payload, _ in spy.received)
    # Retained messages pass the read ACL too: the public directory, and only alpha's presence.
    assert home1.topics() == {"foyer/v1/brand/alpha/status", "foyer/v1/brand/alpha/manifest",
                              "foyer/v1/brand/beta/manifest", "foyer/v1/hub/home1/from/alpha"}


def test_a_client_id_cannot_hijack_another_accounts_session(connect: Callable[..., Client]) -> None:
    beta = connect("brand-beta", client_id="foyer-brand-beta", clean_session=False)
    beta.subscribe("foyer/v1/brand/beta/from/+")
    home2 = connect("hub-home2")
    # alpha borrows beta's client id (the one it chose, and the one the broker assigns).
    for client_id in ("foyer-brand-beta", "brand-beta"):
        thief = connect("brand-alpha", client_id=client_id)
        assert thief.accepted
        thief.subscribe("foyer/v1/brand/beta/from/+")
        home2.publish("foyer/v1/brand/beta/from/home2", f"online, {client_id}".encode())
        beta.wait_for("foyer/v1/brand/beta/from/home2", f"online, {client_id}".encode())
        settle()
        assert thief.received == []
        thief.close()
    assert beta.disconnects == 0, "beta was kicked off by a connection with its client id"

    # Offline: beta's persistent session queues for it; a clean-session login with its
    # client id would wipe that session if it could take it over.
    beta.close()
    for client_id in ("foyer-brand-beta", "brand-beta"):
        connect("brand-alpha", client_id=client_id, clean_session=True).close()
    home2.publish("foyer/v1/brand/beta/from/home2", b"while beta was away")
    back = connect("brand-beta", client_id="foyer-brand-beta", clean_session=False)
    assert back.session_present
    back.wait_for("foyer/v1/brand/beta/from/home2", b"while beta was away")


# --- TLS listener --------------------------------------------------------------------------------


def _make_certs(tmp: Path) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Foyer test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "san.ext", "-out", "server.crt")
    return tmp


def test_tls_listener_with_passwords(tmp_path: Path) -> None:
    certs = _make_certs(tmp_path)
    tls = TlsFiles(certfile=certs / "server.crt", keyfile=certs / "server.key")
    broker = start_secured_broker(tmp_path, NETWORK, tls, spy=False)
    opened: list[Client] = []
    try:
        good = Client(broker.port, "brand-alpha", broker.secrets["brand-alpha"], ca=certs / "ca.crt")
        opened.append(good)
        assert good.accepted
        bad = Client(broker.port, "brand-alpha", "wrong", ca=certs / "ca.crt")
        opened.append(bad)
        assert bad.connack.is_failure
    finally:
        for client in opened:
            client.close()
        broker.proc.stop()
