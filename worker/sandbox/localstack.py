"""Everything a local run needs on one machine: Redis, the sandbox, worker nodes, a producer.

Used by ``seat-revoker demo``, the integration tests and the benchmarks, so all three start
the system the same way a user would: separate worker processes over a real broker,
talking HTTP to the Polar stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.settings import Settings
from worker.decisions.outcomes import State
from worker.intake.producer import Producer
from worker.sandbox.app import DEFAULT_SANDBOX_TOKEN
from worker.sandbox.control import SandboxControl
from worker.sandbox.localredis import PrivateRedis, redis_answers
from worker.sandbox.process import SandboxProcess
from worker.sandbox.procs import WorkerProcess, settings_env
from worker.store.models import RevocationRequest
from worker.store.records import Store

LOAD_BREAKER_LIMITS: dict[str, Any] = {"breaker_customer_max": 1_000_000,
                                       "breaker_org_max": 1_000_000}


@dataclass
class LocalStack:
    workdir: Path
    database_url: str | None = None  # default: a SQLite file in workdir
    redis_url: str | None = None  # default: REDIS_URL if it answers, else a private Redis
    rate_limit: str = "1000/second"  # the workers' POLAR_RATE_LIMIT
    sandbox_rate_limit: str | None = None
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    # The circuit breaker stays on (every DELETE reserves its place), with limits no load
    # test reaches; tests of the breaker, and the demo, pass the product's limits (``{}``).
    breaker_limits: dict[str, Any] = field(default_factory=lambda: dict(LOAD_BREAKER_LIMITS))
    namespace: str = field(default_factory=lambda: f"sr-{uuid.uuid4().hex[:10]}")
    sandbox: SandboxProcess | None = None
    private_redis: PrivateRedis | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    scheduler: subprocess.Popen[bytes] | None = None
    _producer: Producer | None = None
    _control: SandboxControl | None = None

    def start(self) -> LocalStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.redis_url is None:
            candidate = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
            if redis_answers(candidate):
                self.redis_url = candidate
            else:
                self.private_redis = PrivateRedis().start()
                self.redis_url = self.private_redis.url
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.workdir / 'seat-revoker.db'}"
        Store.from_url(self.database_url).engine.dispose()  # migrate once, before workers
        self.sandbox = SandboxProcess().start()
        self.control.reset(rate_limit=self.sandbox_rate_limit)
        return self

    @property
    def settings_values(self) -> dict[str, Any]:
        assert self.sandbox is not None, "start() the stack first"
        return {
            "polar_api_url": self.sandbox.url,
            "polar_access_token": DEFAULT_SANDBOX_TOKEN,
            "polar_rate_limit": self.rate_limit,
            "redis_url": self.redis_url,
            "database_url": self.database_url,
            "namespace": self.namespace,
            **self.breaker_limits,
            **self.settings_overrides,
        }

    @property
    def env(self) -> dict[str, str]:
        return settings_env(**self.settings_values)

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, **self.settings_values)

    @property
    def control(self) -> SandboxControl:
        if self._control is None:
            assert self.sandbox is not None
            self._control = SandboxControl(self.sandbox.url)
        return self._control

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.settings)
        return self._producer

    @property
    def store(self) -> Store:
        return self.producer.store

    def add_worker(self, concurrency: int = 2, name: str | None = None,
                   extra_args: list[str] | None = None) -> WorkerProcess:
        name = name or f"w{len(self.workers) + 1}"
        worker = WorkerProcess(
            env=self.env,
            log_path=self.workdir / f"{name}.log",
            concurrency=concurrency,
            name=name,
            extra_args=list(extra_args or []),
        ).start()
        self.workers.append(worker)
        return worker

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        """``seat-revoker scheduler`` as its own process, logging to scheduler.log."""
        log = (self.workdir / "scheduler.log").open("ab")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", "scheduler"],
            env={**os.environ, **self.env, "LOG_FORMAT": "json"},
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        return self.scheduler

    def wait_terminal(
        self, request_ids: Iterable[str], timeout: float = 60.0
    ) -> list[RevocationRequest]:
        """Poll the store until every request has its outcome (or raise TimeoutError)."""
        ids = list(request_ids)
        deadline = time.monotonic() + timeout
        while True:
            records = [self.store.get(request_id) for request_id in ids]
            if all(r is not None and State(r.state).is_terminal for r in records):
                return [r for r in records if r is not None]
            if time.monotonic() > deadline:
                pending = [r.id for r in records if r and not State(r.state).is_terminal]
                raise TimeoutError(f"{len(pending)} requests not terminal: {pending[:5]}")
            time.sleep(0.1)

    def logs(self) -> str:
        return "".join(
            w.log_path.read_text(errors="replace") for w in self.workers if w.log_path.exists()
        )

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.terminate()
            self.scheduler.wait(10)
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.private_redis is not None:
            self.private_redis.stop()
            self.private_redis = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
