"""Foyer latency, throughput and footprint, next to the raw MQTT floor — in one run.

    .venv/bin/python benchmarks/latency.py [--n 300] [--broker mosquitto|embedded] [--json out.json]

What it does, every process on loopback and every process stopped at the end:

1. starts its own Mosquitto on a free port (``set_tcp_nodelay true``, no persistence);
2. **floor**: a paho-mqtt client publishes QoS 1, a second paho client echoes it
   back QoS 1 on a reply topic; round trip over ``--n`` messages one at a time,
   then throughput with up to ``--window`` messages in flight. TCP_NODELAY is set
   on both paho sockets (paho leaves Nagle on, which costs ~40 ms per hop);
3. **foyer e2e**: the hub (``python -m hub hub``) and the ``instant`` brand
   (``python -m hub brand run instant``) as their own processes, on that Mosquitto
   or on the embedded broker (``python -m hub broker``) with ``--broker embedded``.
   Start-up time (spawn → ``/api/health`` says ``broker_connected``; brand spawn →
   the hub sees it online), then latency from the client's ``POST /api/messages``
   to the reply event on its WebSocket (``data.ref`` = the posted id,
   ``direction`` = ``in``), one message at a time, then throughput with ``--m``
   messages posted by ``--concurrency`` threads;
4. the hub's resident memory after the run and its CPU use over a few idle seconds.

Both round trips are timed on the client's main thread after the library's
network thread hands the message over (paho's loop thread, the websockets
reader thread), so the two sides pay the same hand-off.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
BRAND = "instant"
HUB_ID = "bench-home"
TARGET_P50_RATIO = 3.0
TARGET_P99_RATIO = 10.0
OP_TIMEOUT = 10.0  # seconds for any single message to come back
STALL_S = 3.0  # a WebSocket silent this long while replies are missing: ask the hub why

T = TypeVar("T")


# --- small helpers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, poll: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as err:
            last_error = err
            value = None
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (the 'inclusive' method) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Stats:
    """Latency figures in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        ms = [s * 1000 for s in seconds]
        return cls(
            n=len(ms),
            p50_ms=percentile(ms, 50),
            p90_ms=percentile(ms, 90),
            p99_ms=percentile(ms, 99),
            max_ms=max(ms),
            mean_ms=statistics.fmean(ms),
        )


# --- child processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process whose output goes to a log file; stopped by its own pid only."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self, stack: ExitStack) -> Proc:
        """Spawn the process; ``stack`` stops it on the way out, whatever happens next."""
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.started_at = time.perf_counter()
            self.popen = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        stack.callback(self.stop)
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited early; its log:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def mosquitto_binary(explicit: str | None) -> str:
    for candidate in (explicit, "/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("mosquitto is not installed (apt-get install mosquitto) — pass --mosquitto PATH")


def start_mosquitto(binary: str, workdir: Path, stack: ExitStack) -> tuple[Proc, int]:
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "set_tcp_nodelay true\n"
        "log_dest stdout\n"
        "log_type error\n"
        "log_type warning\n"
    )
    proc = Proc("mosquitto", [binary, "-c", str(config)], workdir / "mosquitto.log").start(stack)

    def listening() -> bool:
        proc.check_alive()
        return port_open(port)

    wait_until(listening, 10, f"mosquitto on port {port}")
    return proc, port


def start_embedded_broker(workdir: Path, stack: ExitStack) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(
        "embedded-broker",
        [sys.executable, "-m", "hub", "broker", "--port", str(port)],
        workdir / "embedded-broker.log",
    ).start(stack)

    def ready() -> int | None:
        proc.check_alive()
        for line in proc.output().splitlines():
            if "ready on mqtt://" in line:  # it takes another port if ours was taken meanwhile
                return int(line.rsplit(":", 1)[1])
        return None

    actual = wait_until(ready, 20, "the embedded broker")
    wait_until(lambda: port_open(actual), 10, f"embedded broker on port {actual}")
    return proc, actual


# --- /proc figures -----------------------------------------------------------------------------


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields after the command name, from field 3
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by named processes (and this one) between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._cpu: dict[str, float] = {}
        self._wall = 0.0

    def _now(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        times = os.times()
        used["client (this script)"] = times.user + times.system
        return used

    def start(self) -> None:
        self._cpu, self._wall = self._now(), time.perf_counter()

    def stop(self, messages: int) -> dict[str, dict[str, float]]:
        """Per process: ``ms_per_msg`` and ``core_pct`` (100 = one core busy) over the window."""
        wall = time.perf_counter() - self._wall
        return {
            name: {
                "ms_per_msg": 1000 * (used - self._cpu[name]) / messages,
                "core_pct": 100 * (used - self._cpu[name]) / wall,
            }
            for name, used in self._now().items()
        }


# --- the floor: paho → Mosquitto → paho echo → back ----------------------------------------------


class Paho:
    """A paho-mqtt 2.x client with TCP_NODELAY on its socket, running its network loop in a thread."""

    def __init__(self, port: int, client_id: str) -> None:
        self.nodelay = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(200)
        self.client.on_socket_open = self._socket_open
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = lambda *_: self._connected.set()
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(OP_TIMEOUT):
            raise TimeoutError(f"paho client {client_id} could not connect to port {port}")

    def _socket_open(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        if not self._subscribed.wait(OP_TIMEOUT):
            raise TimeoutError(f"no SUBACK for {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class FloorResult:
    latency: Stats
    throughput_msgs_s: float
    throughput_messages: int
    window: int
    payload_bytes: int
    nodelay_on_both_sockets: bool


def measure_floor(port: int, *, n: int, warmup: int, m: int, window: int, payload_bytes: int) -> FloorResult:
    token = uuid.uuid4().hex[:8]
    ping, pong = f"bench/{token}/ping", f"bench/{token}/pong"
    echo = Paho(port, f"bench-echo-{token}")

    def on_ping(client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        client.publish(pong, msg.payload, qos=1)

    echo.client.on_message = on_ping
    echo.subscribe(ping)
    client = Paho(port, f"bench-client-{token}")
    replies: queue.SimpleQueue[int] = queue.SimpleQueue()
    client.client.on_message = lambda _c, _u, msg: replies.put(int.from_bytes(msg.payload[:8], "big"))
    client.subscribe(pong)
    padding = b"x" * max(0, payload_bytes - 8)
    try:
        # Latency: one message at a time.
        samples: list[float] = []
        for seq in range(warmup + n):
            started = time.perf_counter()
            client.client.publish(ping, seq.to_bytes(8, "big") + padding, qos=1)
            got = replies.get(timeout=OP_TIMEOUT)
            elapsed = time.perf_counter() - started
            if got != seq:
                raise RuntimeError(f"floor: expected echo #{seq}, got #{got}")
            if seq >= warmup:
                samples.append(elapsed)

        # Throughput: up to ``window`` messages in flight.
        slots = threading.Semaphore(window)
        done = threading.Event()
        count = 0

        def on_reply(_c: mqtt.Client, _u: object, _msg: mqtt.MQTTMessage) -> None:
            nonlocal count
            count += 1
            slots.release()
            if count == m:
                done.set()

        client.client.on_message = on_reply
        started = time.perf_counter()
        for seq in range(m):
            if not slots.acquire(timeout=OP_TIMEOUT):
                raise TimeoutError(f"floor throughput: stuck with {window} messages in flight")
            client.client.publish(ping, seq.to_bytes(8, "big") + padding, qos=1)
        if not done.wait(60):
            raise TimeoutError(f"floor throughput: {count}/{m} echoes after 60 s")
        elapsed = time.perf_counter() - started
    finally:
        client.close()
        echo.close()
    return FloorResult(
        latency=Stats.of(samples),
        throughput_msgs_s=m / elapsed,
        throughput_messages=m,
        window=window,
        payload_bytes=payload_bytes,
        nodelay_on_both_sockets=client.nodelay and echo.nodelay,
    )


# --- Foyer end to end ----------------------------------------------------------------------------


@dataclass
class StartupResult:
    hub_http_up_s: float
    hub_ready_s: float
    brand_online_s: float


@dataclass
class FoyerResult:
    latency: Stats
    stages_p50_ms: dict[str, float]
    throughput_msgs_s: float
    throughput_messages: int
    concurrency: int
    latency_under_load: Stats
    all_accepted_s: float
    cpu_latency_phase: dict[str, dict[str, float]]
    cpu_throughput_phase: dict[str, dict[str, float]]
    startup: StartupResult
    hub_rss_mb: float
    hub_peak_rss_mb: float
    hub_idle_cpu_pct: float
    idle_window_s: float
    broker: str


def start_hub(broker_port: int, workdir: Path, stack: ExitStack) -> tuple[Proc, httpx.Client, float, float]:
    port = free_port()
    proc = Proc(
        "hub",
        [
            sys.executable,
            "-m",
            "hub",
            "hub",
            "--broker",
            f"mqtt://127.0.0.1:{broker_port}",
            "--data-dir",
            str(workdir / "hub-data"),
            "--port",
            str(port),
            "--hub-id",
            HUB_ID,
            "--opt-in",
            BRAND,
        ],
        workdir / "hub.log",
    ).start(stack)
    http = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=OP_TIMEOUT))

    def health() -> dict[str, Any]:
        proc.check_alive()
        data: dict[str, Any] = http.get("/api/health").json()
        return data

    wait_until(health, 30, "the hub's HTTP API")
    http_up = time.perf_counter() - proc.started_at
    wait_until(lambda: health()["broker_connected"], 30, "the hub to connect to the broker")
    ready = time.perf_counter() - proc.started_at
    return proc, http, http_up, ready


def start_brand(broker_port: int, workdir: Path, http: httpx.Client, stack: ExitStack) -> tuple[Proc, float]:
    proc = Proc(
        f"brand-{BRAND}",
        [
            sys.executable,
            "-m",
            "hub",
            "brand",
            "run",
            BRAND,
            "--broker",
            f"mqtt://127.0.0.1:{broker_port}",
            "--state",
            str(workdir / f"brand-{BRAND}.db"),
        ],
        workdir / f"brand-{BRAND}.log",
    ).start(stack)

    def online() -> bool:
        proc.check_alive()
        return bool(http.get(f"/api/brands/{BRAND}").json()["online"])

    wait_until(online, 30, f"brand {BRAND} to be online")
    return proc, time.perf_counter() - proc.started_at


def authenticate(http: httpx.Client, workdir: Path) -> None:
    """Pair the benchmark as a device if the hub's API asks for one (401), like a household client.

    The pairing code comes from ``python -m hub pair`` run on the hub's data directory, as its
    owner would do; the token then goes in ``Authorization: Bearer`` on HTTP and the WebSocket.
    """
    if http.get(f"/api/brands/{BRAND}").status_code != 401:
        return
    pair = subprocess.run(
        [sys.executable, "-m", "hub", "pair", "--data-dir", str(workdir / "hub-data"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = pair.stdout.split()
    if pair.returncode != 0 or not lines:
        raise RuntimeError(f"the hub wants a device token and `hub pair` failed: {pair.stderr[-1000:]}")
    response = http.post("/api/pair", json={"code": lines[-1], "name": "latency benchmark"})
    if response.is_error:
        raise RuntimeError(f"pairing with the hub failed: {response.status_code} {response.text}")
    http.headers["Authorization"] = f"Bearer {response.json()['token']}"


def post(http: httpx.Client, text: str) -> str:
    response = http.post("/api/messages", json={"text": text, "brand": BRAND})
    if response.status_code != 202:
        raise RuntimeError(f"POST /api/messages: {response.status_code} {response.text}")
    return str(response.json()["message"]["id"])


STAGES = ("sent", "delivered")  # statuses the hub reports for the member's message on the stream


def wait_reply(ws: ClientConnection, message_id: str, stage_times: dict[str, float]) -> float:
    """Read events until the reply to ``message_id``; note when it reached each status."""
    deadline = time.monotonic() + OP_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no reply to {message_id} within {OP_TIMEOUT:.0f} s")
        event = json.loads(ws.recv(timeout=remaining))
        now = time.perf_counter()
        if event.get("event") != "message":
            continue
        data = event["data"]
        if data.get("direction") == "in" and data.get("ref") == message_id:
            return now
        if data.get("id") == message_id and data.get("status") in STAGES:
            stage_times.setdefault(data["status"], now)


def measure_e2e_latency(
    http: httpx.Client, ws: ClientConnection, n: int, warmup: int
) -> tuple[Stats, dict[str, float]]:
    samples: list[float] = []
    stages: dict[str, list[float]] = {"accepted (HTTP 202)": [], **{s: [] for s in STAGES}}
    for i in range(warmup + n):
        stage_times: dict[str, float] = {}
        started = time.perf_counter()
        message_id = post(http, f"Bonjour, où en est ma commande numéro {i} ?")
        accepted = time.perf_counter()
        replied = wait_reply(ws, message_id, stage_times)
        if i < warmup:
            continue
        samples.append(replied - started)
        stages["accepted (HTTP 202)"].append(accepted - started)
        for status, at in stage_times.items():
            stages[status].append(at - started)
    stages_p50 = {name: percentile(v, 50) * 1000 for name, v in stages.items() if v}
    stages_p50["reply on WebSocket"] = percentile(samples, 50) * 1000
    return Stats.of(samples), stages_p50


class ReplyCollector:
    """Reads the WebSocket in a thread and notes when each reply (by ``ref``) arrives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ws-replies", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    raw = self.ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                now = time.perf_counter()
                event = json.loads(raw)
                data = event.get("data", {})
                if event.get("event") == "message" and data.get("direction") == "in" and data.get("ref"):
                    with self.changed:
                        self.arrived.setdefault(data["ref"], now)
                        self.changed.notify_all()
        except Exception as err:  # noqa: BLE001 - reported to the main thread, which raises it
            self.error = err
            with self.changed:
                self.changed.notify_all()

    def wait_all(self, ids: set[str], timeout: float, diagnose: Callable[[int], str | None]) -> None:
        """Wait until every id in ``ids`` has its reply; when the stream goes quiet, ask ``diagnose``.

        ``diagnose(missing)`` returns an explanation to fail with (or None to keep waiting).
        """
        deadline = time.monotonic() + timeout
        seen, quiet_since = -1, time.monotonic()
        while True:
            with self.changed:
                if self.error is not None:
                    raise RuntimeError(f"WebSocket reader failed: {self.error!r}")
                missing = len(ids - self.arrived.keys())
                if not missing:
                    return
                if len(self.arrived) != seen:
                    seen, quiet_since = len(self.arrived), time.monotonic()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{missing}/{len(ids)} replies missing after {timeout:.0f} s")
                self.changed.wait(min(remaining, 0.5))
            if time.monotonic() - quiet_since > STALL_S:
                problem = diagnose(missing)
                if problem:
                    raise RuntimeError(problem)
                quiet_since = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def replies_stored(http: httpx.Client) -> int | None:
    """How many replies the hub has stored (its own counter, independent of the event stream)."""
    try:
        return int(http.get("/api/health").json()["stats"]["reply_received"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


def measure_e2e_throughput(
    control: httpx.Client, ws: ClientConnection, m: int, concurrency: int
) -> tuple[float, Stats, float]:
    """(replies/s, latency of each message under that load, seconds until every POST was accepted)."""
    stored_before = replies_stored(control)

    def diagnose(missing: int) -> str | None:
        stored_now = replies_stored(control)
        if stored_before is None or stored_now is None or stored_now - stored_before < m + 1:
            return None  # the hub is still catching up (or does not say): keep waiting
        return (
            f"the hub stored all {m} replies but {missing} never came on the WebSocket, which stayed"
            " open and silent: the hub drops a listener whose event queue (1000) overflows without"
            " closing it. Use a smaller --m (or fewer --concurrency)."
        )

    collector = ReplyCollector(ws)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        with httpx.Client(
            base_url=control.base_url, headers=control.headers, timeout=30, limits=limits
        ) as http:
            post(http, "warm-up")  # open one connection before the clock starts
            sent_at: dict[str, float] = {}
            lock = threading.Lock()

            def one(i: int) -> None:
                started = time.perf_counter()
                message_id = post(http, f"Bonjour, message {i} du lot")
                with lock:
                    sent_at[message_id] = started

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency, thread_name_prefix="poster") as pool:
                list(pool.map(one, range(m)))
            all_accepted = time.perf_counter() - started
            collector.wait_all(set(sent_at), timeout=90, diagnose=diagnose)
            finished = max(collector.arrived[mid] for mid in sent_at)
    finally:
        collector.stop()
    under_load = Stats.of([collector.arrived[mid] - at for mid, at in sent_at.items()])
    return m / (finished - started), under_load, all_accepted


def idle_cpu(pid: int, seconds: float) -> float:
    """Percent of one core the process used while nothing was asked of it."""
    before_cpu, before = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    after_cpu, after = cpu_seconds(pid), time.perf_counter()
    return 100 * (after_cpu - before_cpu) / (after - before)


def measure_foyer(
    broker_kind: str,
    *,
    mosquitto_port: int,
    mosquitto_pid: int,
    workdir: Path,
    stack: ExitStack,
    args: argparse.Namespace,
) -> FoyerResult:
    if broker_kind == "embedded":
        broker_proc, broker_port = start_embedded_broker(workdir, stack)
        broker_pid = broker_proc.pid
    else:
        broker_port, broker_pid = mosquitto_port, mosquitto_pid
    hub, http, http_up, hub_ready = start_hub(broker_port, workdir, stack)
    authenticate(http, workdir)
    brand, brand_online = start_brand(broker_port, workdir, http, stack)
    ws_url = str(http.base_url).rstrip("/").replace("http", "ws", 1) + "/api/events"
    # A large receive buffer: the hub drops a listener whose queue fills up (1000 events).
    ws = connect(
        ws_url,
        open_timeout=OP_TIMEOUT,
        max_queue=4096,
        additional_headers={k: v for k, v in http.headers.items() if k.lower() == "authorization"},
    )
    stack.callback(ws.close)

    meter = CpuMeter({"hub": hub.pid, f"brand {BRAND}": brand.pid, f"broker ({broker_kind})": broker_pid})
    meter.start()
    latency, stages = measure_e2e_latency(http, ws, args.n, args.warmup)
    cpu_latency = meter.stop(args.n + args.warmup)
    meter.start()
    throughput, under_load, all_accepted = measure_e2e_throughput(http, ws, args.m, args.concurrency)
    cpu_throughput = meter.stop(args.m + 1)
    hub.check_alive()
    brand.check_alive()
    time.sleep(0.5)  # let the last receipts and status updates settle
    idle_pct = idle_cpu(hub.pid, args.idle_seconds)
    rss, peak = rss_mb(hub.pid)
    return FoyerResult(
        latency=latency,
        stages_p50_ms=stages,
        throughput_msgs_s=throughput,
        throughput_messages=args.m,
        concurrency=args.concurrency,
        latency_under_load=under_load,
        all_accepted_s=all_accepted,
        cpu_latency_phase=cpu_latency,
        cpu_throughput_phase=cpu_throughput,
        startup=StartupResult(hub_http_up_s=http_up, hub_ready_s=hub_ready, brand_online_s=brand_online),
        hub_rss_mb=rss,
        hub_peak_rss_mb=peak,
        hub_idle_cpu_pct=idle_pct,
        idle_window_s=args.idle_seconds,
        broker=broker_kind,
    )


# --- report ------------------------------------------------------------------------------------


@dataclass
class Report:
    floor: FloorResult
    foyer: FoyerResult
    settings: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, target, foyer, floor in (
            ("p50", TARGET_P50_RATIO, self.foyer.latency.p50_ms, self.floor.latency.p50_ms),
            ("p99", TARGET_P99_RATIO, self.foyer.latency.p99_ms, self.floor.latency.p99_ms),
        ):
            ratio = foyer / floor
            self.ratios[name] = {"ratio": ratio, "target": target, "meets": ratio <= target}


def render(report: Report) -> str:
    floor, foyer = report.floor, report.foyer
    broker = "Mosquitto" if foyer.broker == "mosquitto" else "embedded amqtt broker"
    rows = [
        ("floor  paho→Mosquitto→paho echo", floor.latency, floor.throughput_msgs_s, f"window {floor.window}"),
        (
            f"foyer  HTTP POST→WS reply ({foyer.broker})",
            foyer.latency,
            foyer.throughput_msgs_s,
            f"{foyer.concurrency} posters, {foyer.throughput_messages} msgs",
        ),
    ]
    lines = [
        f"{'path':<42}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'msg/s':>9}  throughput setup",
        "-" * 98,
    ]
    for name, stats, rate, note in rows:
        lines.append(
            f"{name:<42}{stats.p50_ms:>9.2f}{stats.p99_ms:>9.2f}{stats.max_ms:>9.2f}{rate:>9.0f}  {note}"
        )
    lines += [
        "",
        f"{'ratio':<42}{'value':>9}{'target':>9}  verdict",
        "-" * 70,
    ]
    for name, ratio in report.ratios.items():
        verdict = "meets" if ratio["meets"] else "misses"
        label = f"{name}(foyer) / {name}(floor)"
        lines.append(f"{label:<42}{ratio['ratio']:>8.1f}x{ratio['target']:>8.0f}x  {verdict}")
    lines += ["", "foyer e2e, where the time goes (p50 since the POST, one message at a time):"]
    lines += [f"  {stage:<40}{ms:>9.2f} ms" for stage, ms in foyer.stages_p50_ms.items()]
    load = foyer.latency_under_load
    lines += [
        f"  {'each message in the throughput burst':<40}{load.p50_ms:>9.2f} ms p50, {load.p99_ms:.2f} ms p99",
        f"  {'all throughput POSTs accepted after':<40}{foyer.all_accepted_s * 1000:>9.0f} ms",
        "",
        f"{'CPU per message (ms)':<42}{'one by one':>12}{'throughput':>12}{'busy % there':>14}",
    ]
    for name, one in foyer.cpu_latency_phase.items():
        busy = foyer.cpu_throughput_phase[name]
        lines.append(
            f"  {name:<40}{one['ms_per_msg']:>12.2f}{busy['ms_per_msg']:>12.2f}{busy['core_pct']:>13.0f}%"
        )
    lines += [
        "",
        f"{'hub start-up: spawn → HTTP answers':<42}{foyer.startup.hub_http_up_s:>9.2f} s",
        f"{'hub start-up: spawn → broker_connected':<42}{foyer.startup.hub_ready_s:>9.2f} s",
        f"{'brand start-up: spawn → online at the hub':<42}{foyer.startup.brand_online_s:>9.2f} s",
        f"{'hub RSS after the run (peak)':<42}{foyer.hub_rss_mb:>9.1f} MB ({foyer.hub_peak_rss_mb:.1f} MB)",
        f"{f'hub idle CPU over {foyer.idle_window_s:.0f} s (one core = 100 %)':<42}"
        f"{foyer.hub_idle_cpu_pct:>9.2f} %",
        "",
        f"floor: {floor.latency.n} round trips after warm-up, {floor.payload_bytes}-byte payload,"
        f" TCP_NODELAY on both paho sockets: {'yes' if floor.nodelay_on_both_sockets else 'NO'};"
        f" throughput over {floor.throughput_messages} messages.",
        f"foyer: {foyer.latency.n} messages after warm-up, hub + brand '{BRAND}' as processes on {broker}.",
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=300, help="round trips timed one at a time (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed round trips first (default 30)")
    parser.add_argument("--m", type=int, default=500, help="messages for Foyer throughput (default 500)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads posting for throughput")
    parser.add_argument("--floor-m", type=int, default=5000, help="messages for the floor's throughput")
    parser.add_argument("--window", type=int, default=50, help="floor messages in flight (default 50)")
    parser.add_argument("--payload", type=int, default=256, help="floor payload bytes (default 256)")
    parser.add_argument(
        "--broker",
        choices=["mosquitto", "embedded"],
        default="mosquitto",
        help="broker for the Foyer part; the floor always uses Mosquitto",
    )
    parser.add_argument("--mosquitto", help="mosquitto binary (default /usr/sbin/mosquitto)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle CPU window (default 3 s)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with child logs")
    return parser


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the children."""

    def handler(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.n, args.m, args.floor_m, args.window, args.concurrency) < 1 or args.warmup < 0:
        raise SystemExit("--n, --m, --floor-m, --window and --concurrency must be positive")
    binary = mosquitto_binary(args.mosquitto)
    workdir = Path(tempfile.mkdtemp(prefix="foyer-bench-"))
    ok = False
    try:
        with _terminate_as_exit(), ExitStack() as stack:
            mosquitto, mosquitto_port = start_mosquitto(binary, workdir, stack)
            print(f"mosquitto on 127.0.0.1:{mosquitto_port}; measuring the floor…", flush=True)
            floor = measure_floor(
                mosquitto_port,
                n=args.n,
                warmup=args.warmup,
                m=args.floor_m,
                window=args.window,
                payload_bytes=args.payload,
            )
            print(f"starting the hub and brand '{BRAND}' on the {args.broker} broker…", flush=True)
            foyer = measure_foyer(
                args.broker,
                mosquitto_port=mosquitto_port,
                mosquitto_pid=mosquitto.pid,
                workdir=workdir,
                stack=stack,
                args=args,
            )
            mosquitto.check_alive()
        report = Report(floor, foyer, settings={**vars(args), "json": str(args.json) if args.json else None})
        print()
        print(render(report))
        if args.json:
            args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
            print(f"\nresults written to {args.json}")
        ok = True
    except (RuntimeError, OSError, httpx.HTTPError, WebSocketException) as err:
        print(f"\nbenchmark failed: {err}", file=sys.stderr)
        return 1
    finally:
        if ok and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"child process logs kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
