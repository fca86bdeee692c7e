"""The sandbox in its own process, so its clock readings are not delayed by the GIL of
whatever drives it (a test polling the store, a benchmark sampling memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx


class SandboxProcess:
    """``seat-revoker sandbox --port 0`` as a child process; ``.url`` once started."""

    def __init__(self, rate_limit: str | None = None) -> None:
        self.rate_limit = rate_limit
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> SandboxProcess:
        args = [sys.executable, "-m", "worker.cli.main", "sandbox", "--port", "0"]
        if self.rate_limit:
            args += ["--rate-limit", self.rate_limit]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("sandbox listening on "):
                self.url = line.removeprefix("sandbox listening on ").strip()
                break
        while self.url and time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/_sandbox/config", timeout=1.0).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the sandbox process did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
