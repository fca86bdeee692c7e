"""Property-based fuzzing of the app against its own OpenAPI document (schemathesis):
whatever is sent, authenticated or not, the API never answers 5xx.

Bounded (a few examples per operation, no shrinking deadline) so it runs in well under two
minutes. Real SQLite and Redis behind the app; nothing is sent to Polar (no worker runs).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from redis import Redis
from schemathesis.checks import not_a_server_error

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings

pytestmark = pytest.mark.integration

API_KEY = "fuzz-api-key-" + "3" * 20
SECRET = "whsec_" + base64.b64encode(b"fuzzing secret, thirty-two bytes").decode()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[FastAPI]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    namespace = f"api-fuzz-{uuid.uuid4().hex[:8]}"
    app = create_app(
        Settings(_env_file=None, database_url=f"sqlite:///{workdir / 'store.db'}",  # type: ignore[call-arg]
                 redis_url=redis_url, namespace=namespace),
        api_settings=ApiSettings(_env_file=None, api_keys=API_KEY,  # type: ignore[call-arg]
                                 webhook_secrets=SECRET),
    )
    yield app
    redis = Redis.from_url(redis_url)
    for key in redis.scan_iter(f"{namespace}:*"):
        redis.delete(key)
    redis.close()


def operations(app: FastAPI) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis' own pytest plugin does not load under this pytest version, so each
# operation's case strategy is driven with hypothesis directly.
@pytest.mark.parametrize(("authenticated", "examples"), [(True, 50), (False, 8)],
                         ids=["with key", "without key"])
def test_no_operation_answers_5xx(app: FastAPI, authenticated: bool, examples: int) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"} if authenticated else {}
    ops = operations(app)
    assert len(ops) >= 9
    for operation in ops:  # one hypothesis run per operation, bounded examples each

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        run()
