"""The embedded MQTT broker (amqtt, in-process) used when no broker is configured.

It is the zero-setup choice for one machine, not a production broker: amqtt
does not redeliver unacknowledged QoS 1 messages after a reconnect, does not
enforce keepalive, and sends retained messages past ACLs. Foyer never relies on
it for delivery (outbox + receipts do that) and never retains anything private.
A real home or network points Foyer at Mosquitto or a cluster with ``--broker``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hub.errors import BrokerError
from hub.mqtt import BrokerSettings

__all__ = ["EmbeddedBroker", "free_port", "port_is_free", "secured_embedded"]

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

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, secured: Any = None) -> None:
        """``secured`` is an amqtt config from :func:`hub.broker_acl.amqtt_config`; None is anonymous."""
        self.host = host
        self.port = port or free_port(host)
        self._secured: dict[str, Any] | None = secured
        self._broker: Any = None

    @property
    def settings(self) -> BrokerSettings:
        return BrokerSettings(host=self.host, port=self.port)

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker  # imported here: only the embedded mode pays for it

        config = self._secured or {
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
        except Exception as err:  # amqtt raises bare exceptions: name the address at least
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


def secured_embedded(
    data_dir: Path, hub_id: str, brand_ids: list[str], host: str, port: int
) -> tuple[EmbeddedBroker, BrokerSettings, Path]:
    """An embedded broker that refuses anonymous clients: one account per identity.

    The accounts (passwords in ``<data_dir>/secrets.json``, a Mosquitto-format ``passwd``)
    cover this hub and every brand of its directory. The topic ACL lets a brand publish
    to this hub whether or not the household opted in (the broker cannot follow live
    opt-in changes); the hub itself refuses brands it has not opted into.
    """
    from hub.acl import HubEntry, Network, hub_username, write_mosquitto_config
    from hub.broker_acl import amqtt_config

    network = Network(hubs={hub_id: HubEntry(opt_in=list(brand_ids))}, brands=list(brand_ids))
    paths = write_mosquitto_config(network, data_dir, port, host=host)
    secrets = json.loads(paths["secrets"].read_text())
    broker = EmbeddedBroker(host, port, secured=amqtt_config(network, paths["passwd"], host, port))
    username = hub_username(hub_id)
    settings = BrokerSettings(host=host, port=port, username=username, password=secrets[username])
    return broker, settings, paths["secrets"]
