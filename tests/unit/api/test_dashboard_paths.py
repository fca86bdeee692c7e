"""Pure pieces of the operator's view: where a form may send the browser back to (never
off the dashboard), what `seat-revoker api` prints, stored dicts shown without reprs."""

from __future__ import annotations

import pytest

from worker.api.routers.dashboard import go, local_path
from worker.api.server import listening_lines
from worker.cli.display import mapping_text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/dashboard/requests?state=failed", "/dashboard/requests?state=failed"),
        ("/dashboard", "/dashboard"),
        ("https://evil.example/dashboard", "/dashboard"),
        ("//evil.example/dashboard", "/dashboard"),
        ("/v1/revocations", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("/dashboard/x#frag", "/dashboard/x"),
    ],
)
def test_local_path(target: str, expected: str) -> None:
    assert local_path(target) == expected


def test_go_replaces_an_earlier_notice() -> None:
    response = go("/dashboard/requests?state=failed&notice=old", "Request abc sent again.")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/dashboard/requests?state=failed&notice=Request+abc+sent+again.")


@pytest.mark.parametrize(
    ("host", "first", "browse"),
    [("127.0.0.1", "http://127.0.0.1:8000", "http://127.0.0.1:8000/dashboard"),
     ("0.0.0.0", "http://0.0.0.0:8000", "http://127.0.0.1:8000/dashboard")],
)
def test_listening_lines(host: str, first: str, browse: str) -> None:
    lines = listening_lines(host, 8000)
    assert lines[0] == f"seat-revoker API listening on {first}"
    assert any(browse in line for line in lines)


@pytest.mark.parametrize(
    ("value", "shown"),
    [({"retry": "manual", "by": "cli:ann"}, "retry=manual, by=cli:ann"),
     ({"status": 403, "error": None, "x": ""}, "status=403"),
     ({"seen": {"email": "a@b"}}, "seen=email=a@b"),
     ([1, {"k": "v"}], "[1, k=v]"), (None, ""), ("text", "text")],
)
def test_mapping_text(value: object, shown: str) -> None:
    assert mapping_text(value) == shown
