"""The brand's human agents: who may log in to the desk, their sessions, and login throttling.

Agents are listed in a JSON file given to ``foyer brand run --desk-agents FILE``::

    [{"login": "lea", "name": "Léa", "password_hash": "$7$100000$…$…"}]

``password_hash`` is PBKDF2-HMAC-SHA512 in Mosquitto's ``$7$<iterations>$<salt>$<hash>``
format (:func:`hub.acl.hash_password`); make one with
``python -m brand_adapters.desk hash-password``. The file holds no clear password.
Sessions live in memory: after a restart of the adapter, agents log in again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from brand_adapters.desk.state import DeskError
from hub.acl import hash_password, verify_password

__all__ = [
    "DESK_PBKDF2_ITERATIONS",
    "Agent",
    "AgentsFileError",
    "Directory",
    "LoginThrottle",
    "Sessions",
    "hash_agent_password",
    "load_agents",
]

DESK_PBKDF2_ITERATIONS = 210_000
"""PBKDF2-SHA512 iterations for agents' passwords (OWASP's 2023 advice); logins are rare."""

SESSION_TTL_S = 12 * 3600


class AgentsFileError(DeskError):
    """The agents file is missing, not JSON, or an entry is invalid."""

    code = "invalid_agents_file"


class Agent(BaseModel):
    """One person who answers members at the desk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    login: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")]
    name: Annotated[str, Field(min_length=1, max_length=80)]
    password_hash: Annotated[str, Field(pattern=r"^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$", repr=False)]


_AGENTS = TypeAdapter(list[Agent])


def hash_agent_password(password: str, iterations: int = DESK_PBKDF2_ITERATIONS) -> str:
    """The ``password_hash`` to put in the agents file for ``password``."""
    return hash_password(password, iterations=iterations)


def load_agents(path: Path | str) -> Directory:
    """Read and check an agents file; :class:`AgentsFileError` naming the file and the bad entry."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise AgentsFileError(f"cannot read the desk agents file {str(path)!r}: {err}") from err
    try:
        agents = _AGENTS.validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise AgentsFileError(
            f"desk agents file {str(path)!r} is invalid at {where}: {first['msg']}"
            ' (expected [{"login": …, "name": …, "password_hash": "$7$…"}])'
        ) from err
    return Directory(agents)


class Directory:
    """The agents who may log in, by login."""

    def __init__(self, agents: Iterable[Agent]) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            if agent.login in self._agents:
                raise AgentsFileError(f"desk agent login {agent.login!r} appears twice")
            self._agents[agent.login] = agent
        if not self._agents:
            raise AgentsFileError("the desk agents file lists no agent")
        # Checked against unknown logins so that a wrong login costs as long as a wrong password.
        self._decoy = hash_agent_password(secrets.token_urlsafe(16))

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, login: str) -> Agent | None:
        return self._agents.get(login)

    def verify(self, login: str, password: str) -> Agent | None:
        """The agent, if ``password`` is theirs."""
        agent = self._agents.get(login)
        ok = verify_password(password, agent.password_hash if agent else self._decoy)
        return agent if ok and agent is not None else None

    @classmethod
    def from_json(cls, text: str) -> Directory:
        """For tests and embedding: the agents file's content as a string."""
        return cls(_AGENTS.validate_python(json.loads(text)))


@dataclass
class _Session:
    login: str
    expires: float


class Sessions:
    """Opaque random tokens (cookie or bearer) → agent login; only their SHA-256 is kept."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._by_hash: dict[str, _Session] = {}

    def open(self, login: str) -> str:
        self._prune()
        token = secrets.token_urlsafe(32)
        self._by_hash[_digest(token)] = _Session(login, self._clock() + self._ttl_s)
        return token

    def login_of(self, token: str) -> str | None:
        session = self._by_hash.get(_digest(token))
        if session is None or session.expires <= self._clock():
            return None
        return session.login

    def close(self, token: str) -> None:
        self._by_hash.pop(_digest(token), None)

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._by_hash.items() if s.expires <= now]:
            del self._by_hash[key]


class LoginThrottle:
    """After ``limit`` wrong passwords for one login within ``window_s``, refuse that login for a while."""

    def __init__(
        self, limit: int = 10, window_s: float = 600, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, login: str) -> bool:
        failures = self._failures.get(login)
        if not failures:
            return False
        while failures and failures[0] <= self._clock() - self._window_s:
            failures.popleft()
        return len(failures) >= self._limit

    def failed(self, login: str) -> None:
        self._failures.setdefault(login[:40], deque()).append(self._clock())

    def succeeded(self, login: str) -> None:
        self._failures.pop(login, None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
