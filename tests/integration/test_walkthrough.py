"""The local walkthrough as a new user follows it: `seat-revoker sandbox --seed 3` prints
seat ids, the token and the environment; exporting exactly that, a worker revokes one seat
with the printed `revoke` command and the printed batch ends with one failure (exit 1).
Real processes: the sandbox, a worker node, the CLI; real Redis and a SQLite store."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from config.settings import Settings
from worker.store.records import Store

pytestmark = pytest.mark.integration


def read_until(proc: subprocess.Popen[str], marker: str, limit: int = 200) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while len(lines) < limit:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed: {lines}")


def test_sandbox_seed_prints_a_walkthrough_that_works(redis_url: str, tmp_path: Path) -> None:
    names = {name.upper() for name in Settings.model_fields}
    base = {k: v for k, v in os.environ.items() if k.upper() not in names}
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "worker.cli.main", "sandbox", "--port", "0", "--seed", "3"],
        env=base, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [sandbox]
    try:
        printed = read_until(sandbox, "seat-revoker api &")
        text = "\n".join(printed)
        assert "rate limit: none" in text and "token: polar_oat_sandbox_local" in text
        seat_lines = [line for line in printed if re.match(r"^  [0-9a-f-]{36}  person\d@", line)]
        assert len(seat_lines) == 3
        env = dict(base)
        for line in printed:
            if line.strip().startswith("export "):
                for pair in shlex.split(line.strip().split("#", 1)[0])[1:]:
                    key, _, value = pair.partition("=")
                    env[key] = value
        assert env["POLAR_ACCESS_TOKEN"] == "polar_oat_sandbox_local"
        assert env["POLAR_API_URL"].startswith("http://127.0.0.1:")
        assert env["POLAR_RATE_LIMIT"] == "50/second"
        # What the README adds for a local run: Redis and a store of one's own.
        env.update(REDIS_URL=redis_url, NAMESPACE=f"walk-{uuid.uuid4().hex[:8]}",
                   DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
        worker = subprocess.Popen([sys.executable, "-m", "worker.cli.main", "worker",
                                   "--concurrency", "1"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(worker)
        commands = "\n".join(printed[printed.index("then:") + 1:]).replace("\\\n", " ")
        revoke = next(line for line in commands.splitlines() if "seat-revoker revoke" in line)
        printf = next(line for line in commands.splitlines() if line.strip().startswith("printf"))
        cli = f"{shlex.quote(sys.executable)} -m worker.cli.main"
        done = subprocess.run(revoke.replace("seat-revoker", cli, 1), shell=True, env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "revoked" in done.stdout
        subprocess.run(printf, shell=True, cwd=tmp_path, check=True)
        batch = subprocess.run(f"{cli} batch leavers.csv --wait --json", shell=True, env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert batch.returncode == 1, batch.stdout + batch.stderr
        assert '"failed": 1' in batch.stdout and '"no_active_seat": 1' in batch.stdout
        assert '"revoked": 2' in batch.stdout
        store = Store.from_url(env["DATABASE_URL"])
        assert store.count_by_state() == {"revoked": 3, "no_active_seat": 1, "failed": 1}
        store.engine.dispose()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
