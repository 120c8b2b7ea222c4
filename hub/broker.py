"""The embedded MQTT broker (amqtt, in-process) used when no broker is configured.

It is the zero-setup choice for one machine, not a production broker: amqtt
does not redeliver unacknowledged QoS 1 messages after a reconnect, does not
enforce keepalive, and sends retained messages past ACLs. Foyer never relies on
it for delivery (outbox + receipts do that) and never retains anything private.
A real home or network points Foyer at Mosquitto or a cluster with ``--broker``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from types import TracebackType
from typing import Any, Self

from hub.errors import BrokerError
from hub.mqtt import BrokerSettings

__all__ = ["EmbeddedBroker", "free_port", "port_is_free"]

log = logging.getLogger(__name__)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers that will bind it: a port in TIME_WAIT after a restart is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` if it is free, else a free port chosen by the kernel."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` for the lifetime of an ``async with`` block."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def settings(self) -> BrokerSettings:
        return BrokerSettings(host=self.host, port=self.port)

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker  # imported here: only the embedded mode pays for it

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._broker = Broker(config)
        try:
            await self._broker.start()
        except Exception as err:
            raise BrokerError(f"embedded broker could not listen on {self.host}:{self.port}: {err}") from err
        log.info("embedded broker listening on %s:%s", self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None
