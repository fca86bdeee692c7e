"""Shared helpers of the benchmarks: machine info, tables, JSON results, RSS sampling,
Celery node processes for the bench-only apps, batch polling and seeded seat ids."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis

from worker.connections import redis_client

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 20240611


# ---------------------------------------------------------------------------- reporting


def machine_info(redis_url: str | None = None) -> dict[str, Any]:
    """What the figures depend on: cores, load, Python, Redis and library versions."""
    import celery
    import kombu

    url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_version = "unknown"
    with contextlib.suppress(Exception):
        client = redis_client(url, timeout=2)
        redis_version = str(client.info("server").get("redis_version"))
        client.close()
    load1, load5, _ = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_version": redis_version,
        "redis_url": url,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "loadavg_1m_5m": [round(load1, 2), round(load5, 2)],
    }


def print_header(title: str, params: Mapping[str, Any], machine: Mapping[str, Any]) -> None:
    print(f"\n=== {title} ===", flush=True)
    print("machine: " + ", ".join(
        f"{k}={machine[k]}" for k in
        ("date", "nproc", "python", "redis_version", "celery", "loadavg_1m_5m")
    ), flush=True)
    print("params:  " + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """A plain fixed-width table (right-aligned numbers)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"results: {path}", flush=True)
    return path


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"seat-revoker-bench-{prefix}-"))


# ---------------------------------------------------------------------------- inputs


def seeded_uuids(count: int, seed: int = SEED) -> list[str]:
    """``count`` distinct UUID4 strings, the same for the same seed."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def seed_claimed_seats(stack: Any, count: int, seed: int) -> list[str]:
    """Create ``count`` claimed seats with seeded ids in the stack's sandbox (the sandbox
    puts them all in one new subscription)."""
    seat_ids = seeded_uuids(count, seed)
    stack.control.create_seats(
        [{"id": sid, "status": "claimed", "email": f"user{i}@bench.test"}
         for i, sid in enumerate(seat_ids)]
    )
    return seat_ids


def seed_subscription_seats(
    stack: Any, count: int, seed: int, per_subscription: int
) -> list[tuple[str, str]]:
    """``count`` claimed seats with seeded ids, ``per_subscription`` to a subscription
    (seeded ids too), in file order: (seat id, subscription id) pairs."""
    seat_ids = seeded_uuids(count, seed)
    subscriptions = seeded_uuids(-(-count // per_subscription), seed + 1_000_003)
    rows = [(sid, subscriptions[i // per_subscription]) for i, sid in enumerate(seat_ids)]
    stack.control.create_seats(
        [{"id": sid, "subscription_id": sub, "status": "claimed",
          "email": f"user{i}@bench.test"} for i, (sid, sub) in enumerate(rows)]
    )
    return rows


def seat_id_csv(seat_ids: Sequence[str], *, guard: bool | None = None) -> bytes:
    """Rows naming a seat id only; ``guard=False`` revokes them without reading who holds
    them (the producer refuses bare seat ids otherwise)."""
    if guard is None:
        return ("seat_id\n" + "".join(f"{s}\n" for s in seat_ids)).encode()
    flag = "true" if guard else "false"
    return ("seat_id,guard\n" + "".join(f"{s},{flag}\n" for s in seat_ids)).encode()


def subscription_seat_csv(rows: Sequence[tuple[str, str]]) -> bytes:
    """Rows naming a seat and its subscription: the worker reads the subscription's seat
    list once (shared by the batch) as the occupant guard, then DELETEs the seat."""
    return ("seat_id,subscription_id\n"
            + "".join(f"{seat},{sub}\n" for seat, sub in rows)).encode()


# ---------------------------------------------------------------------------- timing


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def wait_until(
    check: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> float:
    """Poll ``check`` until true; returns time.time() when it was seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def window_max(times: Sequence[float], window: float = 1.0) -> int:
    """The largest number of timestamps inside any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def request_log_figures(log: Sequence[Mapping[str, Any]], t0: float) -> dict[str, Any]:
    """Figures from the sandbox's request log: DELETE timing and spacing, and the same for
    every Polar call (seat-list reads too), plus the peak in any 1 s window.

    The log's ``time`` is when the sandbox finished a request; minus its ``duration_ms`` it
    is when the request arrived (when the sandbox's own limiter counted it).
    """
    deletes = [r for r in log if r["method"] == "DELETE"]

    def arrival(r: Mapping[str, Any]) -> float:
        return float(r["time"]) - float(r["duration_ms"]) / 1000

    times = sorted(arrival(r) for r in deletes)
    admitted = sorted(arrival(r) for r in deletes if r["status"] != 429)
    gaps = [b - a for a, b in itertools.pairwise(admitted)]
    calls = sorted(arrival(r) for r in log)
    calls_admitted = sorted(arrival(r) for r in log if r["status"] != 429)
    return {
        "deletes_sent": len(deletes),
        "deletes_429": sum(1 for r in deletes if r["status"] == 429),
        "429_at_s": [round(arrival(r) - t0, 3) for r in log if r["status"] == 429][:20],
        "first_delete_s": round(times[0] - t0, 3) if times else None,
        "last_delete_s": round(times[-1] - t0, 3) if times else None,
        "delete_span_s": round(times[-1] - times[0], 3) if times else None,
        "admitted_per_s": round((len(admitted) - 1) / (admitted[-1] - admitted[0]), 3)
        if len(admitted) > 1 else None,
        "gap_p50_ms": _ms(percentile(gaps, 0.5)),
        "gap_p99_ms": _ms(percentile(gaps, 0.99)),
        "gap_max_ms": _ms(max(gaps, default=None) if gaps else None),
        "calls_sent": len(calls),
        "calls_by_method": dict(sorted(
            {m: sum(1 for r in log if r["method"] == m) for m in {r["method"] for r in log}}
            .items())),
        "first_call_s": round(calls[0] - t0, 3) if calls else None,
        "last_call_s": round(calls[-1] - t0, 3) if calls else None,
        "call_span_s": round(calls[-1] - calls[0], 3) if calls else None,
        "calls_admitted_per_s": round((len(calls_admitted) - 1)
                                      / (calls_admitted[-1] - calls_admitted[0]), 3)
        if len(calls_admitted) > 1 else None,
        "peak_requests_in_1s": window_max(calls),
        "peak_admitted_in_1s": window_max(calls_admitted),
        "sandbox_ms_p50": percentile([float(r["duration_ms"]) for r in deletes], 0.5),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


# ---------------------------------------------------------------------------- memory


def _status_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, amount, _unit = line.split()
                    values[key.rstrip(":")] = int(amount)
    except OSError:
        pass
    return values


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class RssSampler:
    """Samples VmRSS (and the kernel's VmHWM) of node main processes and their pool
    children every ``interval`` seconds in a background thread."""

    nodes: Callable[[], Mapping[str, int]]  # node label -> main pid
    interval: float = 0.2
    peak_rss_kb: dict[str, int] = field(default_factory=dict)
    hwm_kb: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for label, pid in self.nodes().items():
            pids[f"{label}/main({pid})"] = pid
            for n, child in enumerate(children(pid), start=1):
                pids[f"{label}/pool{n}({child})"] = child
        return pids

    def sample(self) -> None:
        for label, pid in self._pids().items():
            status = _status_kb(pid)
            if "VmRSS" in status:
                self.peak_rss_kb[label] = max(self.peak_rss_kb.get(label, 0), status["VmRSS"])
            if "VmHWM" in status:
                self.hwm_kb[label] = max(self.hwm_kb.get(label, 0), status["VmHWM"])
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()  # a last reading (VmHWM covers anything between samples)

    def figures(self) -> dict[str, Any]:
        per_process = {
            label: {"peak_rss_mib": round(self.peak_rss_kb[label] / 1024, 1),
                    "vmhwm_mib": round(self.hwm_kb.get(label, 0) / 1024, 1)}
            for label in sorted(self.peak_rss_kb)
        }
        return {
            "interval_s": self.interval,
            "samples": self.samples,
            "per_process": per_process,
            "max_peak_rss_mib": max((v["peak_rss_mib"] for v in per_process.values()),
                                    default=None),
            "max_vmhwm_mib": max((v["vmhwm_mib"] for v in per_process.values()), default=None),
        }


# ---------------------------------------------------------------------------- processes


@dataclass
class CeleryNode:
    """``celery -A APP worker`` as a child process (the bench-only apps: naive, noop)."""

    app: str
    queue: str
    env: Mapping[str, str]
    log_path: Path
    concurrency: int = 2
    name: str = "node"
    extra_args: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryNode:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, "worker",
             f"--concurrency={self.concurrency}", f"--queues={self.queue}",
             f"--hostname={self.name}-{os.getpid()}-{time.monotonic_ns()}@%h",
             "--loglevel=INFO", "--without-mingle", "--without-gossip", *self.extra_args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def delete_prefix(redis: Redis, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (a benchmark's own namespace)."""
    deleted = 0
    batch: list[bytes] = []
    for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(redis.delete(*batch))
            batch.clear()
    if batch:
        deleted += int(redis.delete(*batch))
    return deleted


def cleanup_namespace(stack: Any) -> None:
    """Delete a LocalStack run's Redis keys (queue, limiter, locks, results): ``ns:*``."""
    if stack.redis_url is None:
        return
    with contextlib.suppress(Exception):
        client = redis_client(stack.redis_url)
        delete_prefix(client, f"{stack.namespace}:")
        client.close()
