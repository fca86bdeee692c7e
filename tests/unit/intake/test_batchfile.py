"""Batch files: the optional ``guard`` column (CSV text and JSON booleans)."""

from __future__ import annotations

import json
import uuid

import pytest

from worker.intake.batchfile import BatchFileError, parse_batch

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


SUB = str(uuid.uuid4())


def test_identical_rows_collapse() -> None:
    data = (f"seat_id,subscription_id,email,key\n{SEAT},{SUB},jane@acme.com,k1\n"
            f"{SEAT},{SUB},Jane@Acme.com,k1\n{SEAT},{SUB},jane@acme.com,\n"
            f"{SEAT},{SUB},jane@acme.com,\n").encode()
    parsed = parse_batch(data, fmt="csv")
    assert [row.line for row in parsed.rows] == [2, 4] and parsed.duplicates == 2


@pytest.mark.parametrize(
    ("second", "field"),
    [
        (f"{OTHER},{SUB},jane@acme.com,k1,", "seat_id"),
        (f"{SEAT},{SUB},joe@acme.com,k1,", "email"),
        (f"{SEAT},{SUB},jane@acme.com,k1,moved on", "reason"),
        (f"{SEAT},{uuid.uuid4()},jane@acme.com,,", "subscription_id"),  # same derived key
    ],
)
def test_same_key_different_content_rejects_the_file_naming_both_lines(
    second: str, field: str
) -> None:
    data = (f"seat_id,subscription_id,email,key,reason\n"
            f"{OTHER},{SUB},ann@acme.com,k0,\n"
            f"{SEAT},{SUB},jane@acme.com,{'k1' if 'k1' in second else ''},\n"
            f"{second}\n").encode()
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt="csv")
    (error,) = caught.value.errors
    assert error.line == 4 and "line 3" in error.message
    assert f"{field} " in error.message and "skipped" in error.message


def test_conflicts_are_found_in_json_lines_too() -> None:
    data = "\n".join(json.dumps(row) for row in (
        {"seat_id": SEAT, "guard": False, "key": "hr-1"},
        {"seat_id": OTHER, "guard": False, "key": "hr-1"},
    )).encode()
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt="jsonl")
    assert "line 2: key 'hr-1' is also used on line 1" in str(caught.value)


def test_echoed_values_are_clipped() -> None:
    data = ("seat_id\n" + "x" * 100_000 + "\n").encode()
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt="csv")
    assert len(str(caught.value)) < 1000
    huge = json.dumps({"seat_id": "y" * 1_000_000}).encode()
    with pytest.raises(BatchFileError) as caught:
        parse_batch(huge, fmt="jsonl")
    assert all(len(e.message) <= 300 for e in caught.value.errors)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_deeply_nested_json_is_a_line_error(fmt: str) -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    if fmt == "jsonl":
        data = b'{"seat_id": ' + data + b"}"
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt=fmt)  # type: ignore[arg-type]
    assert "nested too deeply" in str(caught.value)


def test_nul_characters_are_refused() -> None:
    data = json.dumps({"seat_id": SEAT, "guard": False, "reason": "left\x00"}).encode()
    with pytest.raises(BatchFileError) as caught:
        parse_batch(data, fmt="jsonl")
    assert "line 1: reason: contains a NUL character" in str(caught.value)
