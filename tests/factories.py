"""Factories for end-to-end tests: real processes (broker, hub, brand adapters) and a client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, KeyError) as err:
            last_error = err
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Proc:
    """A child process with its output in a log file (shown when a test fails)."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye — the crash case."""
        if self.popen is not None and self.alive:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.alive:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub", *args]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )


def mosquitto_config(path: Path, port: int, extra: str = "") -> Path:
    # Started as root (CI), Mosquitto would drop to the "mosquitto" user, who cannot read the
    # test's private temp dir; the setting is ignored when not started as root.
    path.write_text(
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "set_tcp_nodelay true\n"
        "max_packet_size 131072\n"
        f"{extra}"
    )
    return path


class HubClient:
    """What a household client does: HTTP calls and the WebSocket event stream."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.Client(base_url=base_url, timeout=10)
        if token:
            self.authorize(token)

    def authorize(self, token: str) -> None:
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def send(self, text: str, **fields: Any) -> httpx.Response:
        return self.http.post("/api/messages", json={"text": text, **fields})

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/conversations/{conversation_id}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def replies(self, conversation_id: str) -> list[dict[str, Any]]:
        return [m for m in self.conversation(conversation_id)["messages"] if m["direction"] == "in"]

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/api/health").json()
        return data

    def brand(self, brand_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"/api/brands/{brand_id}").json()
        return data

    def wait_online(self, brand_id: str, timeout: float = 20) -> None:
        wait_for(lambda: self.brand(brand_id)["online"], timeout, f"{brand_id} online")

    def events(self, since: int | None = None) -> ClientConnection:
        url = self.base_url.replace("http", "ws", 1) + "/api/events"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        query = "" if since is None else f"?since={since}"
        return connect(url + query, open_timeout=10, additional_headers=headers)

    def wait_reply(self, conversation_id: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        return list(
            wait_for(
                lambda: (r := self.replies(conversation_id)) and len(r) >= count and r,
                timeout,
                f"{count} reply(ies) in conversation {conversation_id}",
            )
        )


def next_event(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no matching event on the WebSocket")
        event: dict[str, Any] = json.loads(ws.recv(timeout=remaining))
        if predicate(event):
            return event


class RawMqtt:
    """A bare paho client, to play a misbehaving brand or a snooping subscriber."""

    def __init__(self, port: int, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda _c, _u, msg: self.received.append((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)[1]
        time.sleep(0.3)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def envelopes(self) -> list[dict[str, Any]]:
        out = []
        for _, payload in self.received:
            try:
                out.append(json.loads(payload))
            except ValueError:
                continue
        return out
