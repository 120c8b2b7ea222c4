"""Fixtures: real brokers (embedded and Mosquitto) on free ports, hub and brand processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.sqlite import connect_sqlite
from tests.factories import (
    HubClient,
    Proc,
    free_port,
    mosquitto_binary,
    mosquitto_config,
    port_open,
    python_cmd,
    wait_for,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A hub database file that does not exist yet."""
    return tmp_path / "hub.db"


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``db``, opened the way every Foyer store opens one (WAL)."""
    connection = connect_sqlite(db)
    yield connection
    connection.close()


@dataclass
class Broker:
    kind: str
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def restart(self) -> None:
        self.proc.kill()
        self.proc.start()
        wait_for(lambda: port_open(self.port), 15, f"{self.kind} broker back on {self.port}")


def start_broker(kind: str, tmp_path: Path, extra_config: str = "") -> Broker:
    port = free_port()
    if kind == "mosquitto":
        binary = mosquitto_binary()
        if binary is None:
            if os.environ.get("FOYER_REQUIRE_MOSQUITTO") == "1":
                pytest.fail("FOYER_REQUIRE_MOSQUITTO=1 but no mosquitto binary is installed")
            pytest.skip("mosquitto is not installed (set FOYER_REQUIRE_MOSQUITTO=1 to fail instead)")
        config = mosquitto_config(tmp_path / f"mosquitto-{port}.conf", port, extra_config)
        args = [binary, "-c", str(config)]
    else:
        args = python_cmd("broker", "--port", str(port), "--anonymous")
    proc = Proc(f"{kind}-broker", args, tmp_path / f"{kind}-broker.log").start()
    try:
        wait_for(lambda: port_open(port) and proc.alive, 15, f"{kind} broker on port {port}")
    except TimeoutError as err:
        proc.stop()
        raise TimeoutError(f"{err}; its log:\n{proc.output()[-2000:]}") from err
    return Broker(kind, port, proc)


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A real broker process on a free port: the embedded one, then Mosquitto."""
    started = start_broker(str(request.param), tmp_path)
    yield started
    started.proc.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    started = start_broker("mosquitto", tmp_path)
    yield started
    started.proc.stop()


@dataclass
class HubRunner:
    """The hub as its own process, restartable on the same database."""

    broker: Broker
    tmp_path: Path
    hub_id: str = "test-home"
    opt_in: list[str] = field(default_factory=list)
    proc: Proc | None = None
    client: HubClient | None = None
    port: int = 0
    token: str = ""

    def start(self) -> HubClient:
        self.port = free_port()
        args = python_cmd(
            "hub",
            "--broker",
            self.broker.url,
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--hub-id",
            self.hub_id,
        )
        for brand_id in self.opt_in:
            args += ["--opt-in", brand_id]
        self.proc = Proc("hub", args, self.tmp_path / "hub.log").start()
        client = HubClient(f"http://127.0.0.1:{self.port}")
        wait_for(lambda: client.health()["broker_connected"], 20, "the hub to be ready")
        if not self.token:
            self.token = pair_device(self.data_dir, client, "admin")
        client.authorize(self.token)
        self.client = client
        return client

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "hub"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        if self.client is not None:
            self.client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.client is not None:
            self.client.close()


@dataclass
class BrandRunner:
    adapter: str
    broker: Broker
    tmp_path: Path
    proc: Proc | None = None
    desk_port: int | None = None

    @property
    def state(self) -> Path:
        return self.tmp_path / f"brand-{self.adapter}.db"

    def start(self) -> BrandRunner:
        args = python_cmd(
            "brand", "run", self.adapter, "--broker", self.broker.url, "--state", str(self.state)
        )
        if self.desk_port is not None:  # the demo agent Léa (login lea, password demo)
            agents = Path(__file__).parent.parent / "brand_adapters" / "sportissimo" / "agents.json"
            args += ["--desk-port", str(self.desk_port), "--desk-agents", str(agents)]
        self.proc = Proc(f"brand-{self.adapter}", args, self.tmp_path / f"brand-{self.adapter}.log")
        self.proc.start()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def pair_device(data_dir: Path, client: HubClient, role: str = "member", name: str = "test") -> str:
    """Pair a device as a member would: a code from `foyer pair` on the hub, then POST /api/pair."""
    shown = subprocess.run(
        python_cmd("pair", "--role", role, "--quiet", "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    response = client.http.post("/api/pair", json={"code": shown.stdout.strip(), "name": name})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def hub_with_brand(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner], adapter: str = "instant"
) -> tuple[HubClient, BrandRunner]:
    """The usual start: the hub opted into ``adapter``, the brand's process running and online."""
    hub_runner.opt_in = [adapter]
    client = hub_runner.start()
    brand = brands(adapter).start()
    client.wait_online(adapter)
    return client, brand


@pytest.fixture
def hub_runner(broker: Broker, tmp_path: Path) -> Iterator[HubRunner]:
    runner = HubRunner(broker, tmp_path)
    yield runner
    runner.stop()


@pytest.fixture
def brands(broker: Broker, tmp_path: Path) -> Iterator[Callable[[str], BrandRunner]]:
    """Start brand adapters as their own processes: ``brands("instant").start()``."""
    runners: list[BrandRunner] = []

    def make(adapter: str) -> BrandRunner:
        runners.append(BrandRunner(adapter, broker, tmp_path))
        return runners[-1]

    yield make
    for runner in runners:
        runner.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach every child process's log to the report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        tmp = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
        if isinstance(tmp, Path):
            for log in sorted(tmp.glob("*.log")):
                report.sections.append((f"log {log.name}", log.read_text(errors="replace")[-6000:]))
