"""Run a command with a reachable Redis: ``python -m worker.sandbox.testenv -- CMD ARGS…``.

Uses ``REDIS_URL`` when it answers; otherwise starts a private ``redis-server`` for the
command's lifetime and passes its URL on in ``REDIS_URL``. Says which one it used.
"""

from __future__ import annotations

import os
import subprocess
import sys

from worker.sandbox.localredis import PrivateRedis, redis_answers


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m worker.sandbox.testenv -- COMMAND [ARGS…]", file=sys.stderr)
        return 2
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        print(f"testenv: using Redis at {url}", flush=True)
        return subprocess.call(argv)
    with PrivateRedis() as private:
        print(f"testenv: no Redis at {url}; started a private redis-server at {private.url}",
              flush=True)
        return subprocess.call(argv, env={**os.environ, "REDIS_URL": private.url})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
