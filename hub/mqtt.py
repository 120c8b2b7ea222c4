"""The MQTT link shared by the hub and the brand SDK.

One :class:`MqttLink` is one persistent-session client (QoS 1, ``clean_session``
off) that reconnects with jittered exponential backoff, re-subscribes, and hands
every incoming message to an async handler. It sets TCP_NODELAY on its socket:
paho-mqtt leaves Nagle's algorithm on, and each QoS 1 hop then stalls ~40 ms.

Delivery is *not* trusted to the broker: callers keep their own outbox and
application receipts (see ``hub.outbox``). ``publish`` raises
:class:`~hub.errors.BrokerError` when the link is down so the caller can keep the
message and try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlsplit

import aiomqtt

from hub.errors import BrokerError
from hub.protocol import MAX_PAYLOAD_BYTES

__all__ = ["BrokerSettings", "MqttLink", "parse_broker_url"]

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, bool], Awaitable[None]]
OnConnect = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to authenticate; built from a URL by :func:`parse_broker_url`."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def url(self) -> str:
        """The URL without the password (safe to print and log)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def parse_broker_url(
    url: str,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> BrokerSettings:
    """Parse ``mqtt://user:pass@host:port`` or ``mqtts://…`` (TLS); refuse anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as err:
        raise ValueError(f"broker URL {url!r} has an invalid port") from err
    return BrokerSettings(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
    )


class MqttLink:
    """A reconnecting MQTT client for one identity; use it as ``async with``."""

    def __init__(
        self,
        broker: BrokerSettings,
        client_id: str,
        handler: Handler,
        *,
        on_connect: OnConnect | None = None,
        will: aiomqtt.Will | None = None,
        max_backoff: float = 15.0,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self._handler = handler
        self._on_connect = on_connect
        self._will = will
        self._max_backoff = max_backoff
        self._subscriptions: set[str] = set()
        self._stale: set[str] = set()
        self._on_this_connection: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-link-{self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def subscribe(self, topic: str) -> None:
        self._subscriptions.add(topic)
        self._stale.discard(topic)
        if self._client is not None and self.connected:
            await self._guard(self._client.subscribe(topic, qos=1), f"subscribe to {topic}")
            self._on_this_connection.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._subscriptions.discard(topic)
        self._on_this_connection.discard(topic)
        if self._client is not None and self.connected:
            await self._guard(self._client.unsubscribe(topic), f"unsubscribe from {topic}")
        else:  # the persistent session still holds it: drop it at the next connection
            self._stale.add(topic)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK; raise BrokerError if down."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            # A broker's max_packet_size would disconnect us and paho would resend forever.
            raise BrokerError(
                f"refusing to publish {len(payload)} bytes to {topic}: limit {MAX_PAYLOAD_BYTES}"
            )
        client = self._client
        if client is None or not self.connected:
            raise BrokerError(f"not connected to {self.broker.url}; cannot publish to {topic}")
        await self._guard(
            client.publish(topic, payload, qos=1, retain=retain, timeout=10), f"publish to {topic}"
        )

    async def _guard(self, operation: Awaitable[object], what: str) -> None:
        try:
            await operation
        except aiomqtt.MqttError as err:
            raise BrokerError(f"could not {what} on {self.broker.url}: {err}") from err

    def _client_for(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            clean_session=False,
            keepalive=30,
            will=self._will,
            tls_context=self.broker.tls_context(),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            timeout=10,
        )

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._client_for() as client:
                    self._client = client
                    self._on_this_connection = set()
                    await self._sync_subscriptions(client)
                    self._connected.set()
                    await self._sync_subscriptions(client)  # what changed while we were subscribing
                    self.connects += 1
                    backoff = 0.1
                    log.info("connected to %s as %s", self.broker.url, self.client_id)
                    if self._on_connect is not None:
                        await self._on_connect()
                    async for message in client.messages:
                        await self._dispatch(str(message.topic), message.payload, message.retain)
            except aiomqtt.MqttError as err:
                log.warning("MQTT link to %s lost: %s", self.broker.url, err)
            except BrokerError as err:
                log.warning("MQTT link to %s failed during connect: %s", self.broker.url, err)
            except Exception:  # never let the link die: log, back off, reconnect
                log.exception("MQTT link to %s failed", self.broker.url)
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            backoff = min(backoff * 2, self._max_backoff)

    async def _sync_subscriptions(self, client: aiomqtt.Client) -> None:
        """Bring this connection's subscriptions in line with what callers asked for."""
        for topic in sorted(self._stale - self._subscriptions):
            await client.unsubscribe(topic)
            self._stale.discard(topic)
        for topic in sorted(self._subscriptions - self._on_this_connection):
            await client.subscribe(topic, qos=1)
            self._on_this_connection.add(topic)

    async def _dispatch(self, topic: str, payload: object, retain: bool) -> None:
        if isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        try:
            await self._handler(topic, data, retain)
        except Exception:
            log.exception("handler failed on a message from %s", topic)
