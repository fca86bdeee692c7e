"""Batch files: the optional ``guard`` column (CSV text and JSON booleans)."""

from __future__ import annotations

import json
import uuid

import pytest

from worker.batchfile import BatchFileError, parse_batch

SEAT, OTHER = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.mark.parametrize(
    ("cell", "guard"),
    [("false", False), ("FALSE", False), ("no", False), ("0", False),
     ("true", True), ("yes", True), ("1", True), ("", True)],
)
def test_csv_guard_column(cell: str, guard: bool) -> None:
    parsed = parse_batch(f"seat_id,guard\n{SEAT},{cell}\n".encode(), fmt="csv")
    (request,) = parsed.requests
    assert (request.seat_id, request.guard) == (SEAT, guard)


def test_jsonl_guard_is_a_boolean() -> None:
    data = "\n".join(json.dumps(row) for row in (
        {"seat_id": SEAT, "guard": False}, {"seat_id": OTHER},
    )).encode()
    unguarded, guarded = parse_batch(data, fmt="jsonl").requests
    assert (unguarded.guard, guarded.guard) == (False, True)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (f"seat_id,guard\n{SEAT},maybe\n".encode(), "csv", "line 2: guard: 'maybe' is not"),
        (json.dumps({"seat_id": SEAT, "guard": 3}).encode(), "jsonl",
         "line 1: guard: must be true or false"),
    ],
)
def test_a_bad_guard_names_its_line(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt=fmt)  # type: ignore[arg-type]
    assert message in str(caught.value)
