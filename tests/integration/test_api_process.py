"""`seat-revoker api` as operators run it: it says where it listens, /docs works with no
internet (the Swagger UI bundle comes from this server), and every request is one
structured access-log line that never holds the API key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from config.settings import Settings

pytestmark = pytest.mark.integration
KEY = "access-log-key-" + "7" * 20


def test_api_prints_its_url_serves_docs_offline_and_logs_each_request(
    redis_url: str, tmp_path: Path
) -> None:
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(REDIS_URL=redis_url, NAMESPACE=f"apiproc-{uuid.uuid4().hex[:8]}",
               DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}", LOG_FORMAT="json",
               API_KEYS=f"ops-alice:{KEY}")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli.main", "api", "--port", "0"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        found = None
        while found is None and len(seen) < 50:  # the URL is printed on standard output
            seen.append(proc.stdout.readline())
            found = re.match(r"seat-revoker API listening on http://127\.0\.0\.1:(\d+)$",
                             seen[-1].strip())
        assert found, seen
        base = f"http://127.0.0.1:{found.group(1)}"
        for _ in range(50):
            try:
                docs = httpx.get(f"{base}/docs", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert docs.status_code == 200
        assert 'src="/docs-assets/swagger-ui-bundle.js"' in docs.text
        assert "cdn." not in docs.text and "https://" not in docs.text.split("<body", 1)[1]
        bundle = httpx.get(f"{base}/docs-assets/swagger-ui-bundle.js", timeout=5)
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        assert httpx.get(f"{base}/redoc", timeout=5).status_code == 200
        listed = httpx.get(f"{base}/v1/revocations", headers={"Authorization": f"Bearer {KEY}"},
                           params={"email": "x@acme.test"}, timeout=5)
        assert listed.status_code == 200
        assert httpx.get(f"{base}/v1/revocations/nope", timeout=5).status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in (out + err).splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "http.request"]
    ok = next(line for line in access if line["route"] == "/v1/revocations")
    assert (ok["method"], ok["status"], ok["path"]) == ("GET", 200, "/v1/revocations")
    assert "duration_ms" in ok and ok["client"] == "127.0.0.1"
    denied = next(line for line in access if line["route"] == "/v1/revocations/{request_id}")
    assert denied["status"] == 401 and denied["path"] == "/v1/revocations/nope"
    assert KEY not in out + err and "x@acme.test" not in out + err  # no key, no query string
