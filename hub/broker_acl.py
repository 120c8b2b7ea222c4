"""Accounts and topic ACLs for the embedded broker (amqtt 0.12), from the same network as hub/acl.py.

:func:`amqtt_config` turns a :class:`hub.acl.Network` into an amqtt config
dict that loads two plugins defined here:

- :class:`FoyerAuthPlugin` reads the *Mosquitto* password file written by
  :func:`hub.acl.write_mosquitto_config` (``$7$`` PBKDF2-SHA512 hashes), so one
  file serves both brokers. It refuses a client without a username, a wrong
  password, a client id that is not the account's own (``hub-h`` /
  ``foyer-hub-h``, ``brand-b`` / ``foyer-brand-b``) and a last will on a topic the
  account may not publish to;
- :class:`FoyerTopicAclPlugin` checks every PUBLISH, SUBSCRIBE and delivery
  (amqtt's RECEIVE action) against the rules of :func:`hub.acl.acl_rules`.

amqtt's own plugins cannot do this: ``FileAuthPlugin`` only reads Argon2 or
``$6$`` hashes; ``TopicAccessControlListPlugin`` loads only ``acl`` (subscribe)
and ``publish_acl`` (a config with ``subscribe_acl`` or ``receive_acl`` fails to
load), so without a RECEIVE check a client that takes over another
account's persistent session by its client id gets that account's messages.

What no plugin can fix in amqtt 0.12.1 (it happens before authentication or
outside the checks; see docs/security.md):

- a CONNECT with a victim's client id, even with a wrong password, disconnects
  the victim, and with ``clean_session`` set deletes its persistent session
  (subscriptions and queued messages);
- on connect, every client gets the retained messages that match *anyone's*
  subscription, unchecked: only public things (presence, manifests) may be
  retained;
- no maximum packet size, no keepalive enforcement, no TLS client identities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from hub.acl import Network, acl_rules, verify_password

__all__ = [
    "FoyerAuthPlugin",
    "FoyerTopicAclPlugin",
    "allowed_client_ids",
    "amqtt_config",
    "filter_covers",
    "topic_matches",
]


def topic_matches(topic: str, topic_filter: str) -> bool:
    """Whether a concrete ``topic`` matches an MQTT ``topic_filter`` (``+`` and ``#``)."""
    levels, filters = topic.split("/"), topic_filter.split("/")
    for index, wanted in enumerate(filters):
        if wanted == "#":
            return True
        if index >= len(levels) or (wanted not in ("+", levels[index])):
            return False
    return len(levels) == len(filters)


def filter_covers(allowed: str, requested: str) -> bool:
    """Whether every topic that ``requested`` can match is matched by ``allowed``."""
    want, have = requested.split("/"), allowed.split("/")
    for index, level in enumerate(have):
        if level == "#":
            return True
        if index >= len(want):
            return False
        asked = want[index]
        if asked == "#" or (asked == "+" and level != "+") or (level not in ("+", asked)):
            return False
    return len(want) == len(have)


def allowed_client_ids(username: str) -> set[str]:
    """The client ids an account may use: its username, or what the hub and SDK send."""
    return {username, f"foyer-{username}"}


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


class FoyerAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped
    """Mosquitto-format passwords, client ids bound to accounts, last wills checked."""

    @dataclass
    class Config:
        password_file: str = ""
        publish: dict[str, list[str]] = field(default_factory=dict)
        """username -> topics it may publish (for its last will)."""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._users: dict[str, str] = {}
        path = Path(self.config.password_file)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                username, _, hashed = line.partition(":")
                self._users[username] = hashed

    async def authenticate(self, *, session: Session) -> bool:
        username = session.username
        hashed = self._users.get(username) if username else None
        if username is None or hashed is None:
            return False
        if session.client_id not in allowed_client_ids(username):
            self.context.logger.warning(
                "refused %s: client id %r is not its own", username, session.client_id
            )
            return False
        if not verify_password(_text(session.password), hashed):
            return False
        may_publish = self.config.publish.get(username, [])
        if session.will_flag and not any(topic_matches(_text(session.will_topic), f) for f in may_publish):
            self.context.logger.warning("refused %s: last will on %r", username, session.will_topic)
            return False
        return True


class FoyerTopicAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Per-account PUBLISH, SUBSCRIBE and RECEIVE rules; anything not listed is denied."""

    @dataclass
    class Config:
        publish: dict[str, list[str]] = field(default_factory=dict)
        subscribe: dict[str, list[str]] = field(default_factory=dict)
        receive: dict[str, list[str]] = field(default_factory=dict)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        username = session.username if session is not None else None
        if username is None or not topic:
            return False
        match action:
            case Action.PUBLISH:
                return any(topic_matches(topic, f) for f in self.config.publish.get(username, []))
            case Action.RECEIVE:
                return any(topic_matches(topic, f) for f in self.config.receive.get(username, []))
            case Action.SUBSCRIBE:
                return any(filter_covers(f, topic) for f in self.config.subscribe.get(username, []))
        return False


def amqtt_config(
    network: Network, passwd_file: Path, host: str = "127.0.0.1", port: int = 1883
) -> dict[str, Any]:
    """An amqtt ``Broker(config)`` dict: one TCP listener, Foyer's accounts and ACLs.

    ``passwd_file`` is the Mosquitto password file from
    :func:`hub.acl.write_mosquitto_config` (its ``secrets.json`` holds the passwords).
    """
    publish: dict[str, list[str]] = {}
    read: dict[str, list[str]] = {}
    for username, rules in acl_rules(network).items():
        publish[username] = [topic for access, topic in rules if access in ("write", "readwrite")]
        read[username] = [topic for access, topic in rules if access in ("read", "readwrite")]
    here = __name__
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            f"{here}.FoyerAuthPlugin": {"password_file": str(passwd_file), "publish": publish},
            f"{here}.FoyerTopicAclPlugin": {"publish": publish, "subscribe": read, "receive": read},
        },
    }
