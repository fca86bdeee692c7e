"""Start and stop ``seat-revoker worker`` processes (demo, tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def settings_env(**settings: object) -> dict[str, str]:
    """Environment variables for a child process: ``redis_url=…`` → ``REDIS_URL=…``."""
    return {name.upper(): str(value) for name, value in settings.items() if value is not None}


@dataclass
class WorkerProcess:
    """One worker node (a Celery main process and its pool), logging to ``log_path``."""

    env: Mapping[str, str]
    log_path: Path
    concurrency: int = 2
    name: str = "worker"
    extra_args: list[str] = field(default_factory=list)
    cwd: Path | None = None  # working directory (default: this process's)
    # Variables removed from the inherited environment (e.g. DATABASE_URL, to run on the
    # default store).
    unset: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env, "LOG_FORMAT": "json"}
        for name in self.unset:
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", "worker", f"--concurrency={self.concurrency}",
             f"--hostname={self.name}-{os.getpid()}-{time.monotonic_ns()}@%h",
             *self.extra_args],
            env=env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(offset, timeout)
        return self

    def _wait_ready(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited at start; see {self.log_path}")
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                if b" ready." in handle.read():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def child_pids(self) -> list[int]:
        """The pool's process ids (children of the main process)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM): running tasks finish, then the node exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the node's main process (Celery's shutdown signals: SIGTERM warm,
        a second SIGTERM or SIGQUIT soft then cold)."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The node's exit status once it exits within ``timeout`` seconds, else None."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the node and its pool, as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
