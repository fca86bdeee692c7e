"""Batch files: CSV with a header row, JSON Lines, or a JSON array — validated whole.

Every problem is reported with its line number (for a JSON array: its 1-based item number)
and nothing is returned unless the whole file is valid, so a bad file never enqueues half a
batch. Identical rows (the same idempotency key and the same content) collapse to the first
one; two rows with the same key but different content (another seat, another person, another
reason…) are a conflict that rejects the file, naming both lines: dropping either would
silently skip someone. Echoed values are clipped so an error report stays small whatever the
file holds.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from worker.intake.requests import PersonInput, RevocationInput

Format = Literal["csv", "jsonl", "json"]
COLUMNS = (
    "seat_id", "subscription_id", "order_id", "email", "member_id", "customer_id",
    "external_id", "reason", "key", "effective_at", "guard", "priority",
    "customer_external_id", "all_customers",
)
# ``priority`` is optional: ``urgent`` or ``bulk`` (empty: bulk, a batch's default lane).
# A row with no seat, subscription or order is a person row (``PersonInput``): the person
# (email, external_id, member_id) and a scope — ``customer_id`` is then the customer the
# person belongs to (not the person's own customer), or ``customer_external_id``, or
# ``all_customers`` true. The worker finds the person's seats in that scope.
PERSON_ONLY = ("customer_external_id", "all_customers")
SEAT_ONLY = ("guard",)
# ``guard`` is optional: empty means the default (guarded); ``false`` revokes a bare seat id
# without the occupant check. Text cells accept true/false, yes/no, 1/0 (any case).
_BOOLEAN_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_ROWS = 100_000
MAX_REPORTED_ERRORS = 50
MAX_MESSAGE = 300  # characters of one problem's text (values in it are clipped)
# Fields compared to tell an identical duplicate row from a conflicting one.
CONTENT_FIELDS = (
    "seat_id", "subscription_id", "order_id", "email", "member_id", "customer_id",
    "external_id", "mode", "reason", "effective_at", "guard", "customer_external_id",
    "all_customers",
)


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", clip(self.message))

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class BatchFileError(ValueError):
    """The file is not a valid batch; ``errors`` lists every problem found."""

    def __init__(self, errors: list[LineError]) -> None:
        self.errors = errors
        shown = "\n".join(f"  {error}" for error in errors[:MAX_REPORTED_ERRORS])
        more = len(errors) - MAX_REPORTED_ERRORS
        tail = f"\n  … and {more} more" if more > 0 else ""
        plural = "" if len(errors) == 1 else "s"
        super().__init__(f"invalid batch file ({len(errors)} problem{plural}):\n{shown}{tail}")


Request = RevocationInput | PersonInput


@dataclass(frozen=True)
class BatchRow:
    line: int
    request: Request


@dataclass(frozen=True)
class ParsedBatch:
    rows: list[BatchRow]  # unique by idempotency key, in file order
    duplicates: int  # identical rows dropped because an earlier row was the same request

    @property
    def requests(self) -> list[Request]:
        return [row.request for row in self.rows]


def detect_format(data: bytes, filename: str | None) -> Format:
    name = (filename or "").lower()
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        return "json" if data.lstrip().startswith(b"[") else "jsonl"
    if name.endswith(".csv"):
        return "csv"
    head = data.lstrip()[:1]
    if head == b"[":
        return "json"
    return "jsonl" if head == b"{" else "csv"


def parse_batch(
    data: bytes,
    *,
    fmt: Format | None = None,
    filename: str | None = None,
    requested_by: str | None = None,
) -> ParsedBatch:
    """Parse and validate a whole batch file; raise ``BatchFileError`` listing every problem."""
    text = _decode(data)
    fmt = fmt or detect_format(data, filename)
    records = {"csv": _csv_records, "jsonl": _jsonl_records, "json": _json_records}[fmt]
    errors: list[LineError] = []
    rows: list[BatchRow] = []
    seen: dict[str, BatchRow] = {}
    duplicates = 0
    for line, record in records(text, errors):
        if len(rows) + duplicates >= MAX_ROWS:
            errors.append(LineError(line, f"more than {MAX_ROWS} rows; split the file"))
            break
        request = _validate(line, record, errors, requested_by)
        if request is None:
            continue
        key = request.idempotency_key()
        first = seen.get(key)
        if first is None:
            seen[key] = row = BatchRow(line, request)
            rows.append(row)
            continue
        differing = differing_content(first.request, request)
        if differing:
            errors.append(LineError(line, _conflict_text(first, request, differing)))
        else:
            duplicates += 1
    if not errors and not rows:
        errors.append(LineError(0, "the file has no rows"))
    if errors:
        raise BatchFileError(errors)
    return ParsedBatch(rows, duplicates)


def content_of(request: Request) -> dict[str, Any]:
    """What a row asks for, normalised as its idempotency key is (email case-folded)."""
    data = {name: getattr(request, name, None) for name in CONTENT_FIELDS}
    data["kind"] = "person" if isinstance(request, PersonInput) else "seat"
    if data["email"]:
        data["email"] = data["email"].casefold()
    return data


def differing_content(first: Request, second: Request) -> list[str]:
    """The fields in which two requests with one idempotency key differ (empty: the same)."""
    a, b = content_of(first), content_of(second)
    return [name for name in (*CONTENT_FIELDS, "kind") if a[name] != b[name]]


def _shown(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return clip(repr(value), 60)


def _conflict_text(first: BatchRow, request: Request, differing: list[str]) -> str:
    if request.key:
        same = f"key {clip(repr(request.key), 60)} is also used on line {first.line}"
        fix = "give each row its own key, or remove one of them"
    else:
        same = f"same seat and person as line {first.line} (so the same request)"
        fix = "remove one of them, or give them distinct keys"
    changes = "; ".join(
        f"{name} {_shown(content_of(first.request)[name])} there, "
        f"{_shown(content_of(request)[name])} here"
        for name in differing
    )
    return f"{same} with different content, so one would be skipped ({fix}): {changes}"


def _decode(data: bytes) -> str:
    if not data.strip():
        raise BatchFileError([LineError(0, "the file is empty")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BatchFileError(
            [LineError(line, f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8")]
        ) from None


def _csv_records(text: str, errors: list[LineError]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        errors.append(LineError(1, f"unreadable CSV: {exc}"))
        return
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        errors.append(LineError(1, f"unknown column(s) {', '.join(map(repr, unknown))}; "
                                   f"known: {', '.join(COLUMNS)}"))
    if len(set(names)) != len(names):
        errors.append(LineError(1, "a column name appears twice"))
    if unknown or len(set(names)) != len(names):
        return
    try:
        for values in reader:
            line = reader.line_num
            if not any(value.strip() for value in values):
                continue  # blank line
            if len(values) != len(names):
                errors.append(LineError(line, f"{len(values)} fields, the header has "
                                              f"{len(names)}"))
                continue
            yield line, dict(zip(names, values, strict=True))
    except csv.Error as exc:
        errors.append(LineError(reader.line_num, f"unreadable CSV: {exc}"))


def _jsonl_records(text: str, errors: list[LineError]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(LineError(line, f"not valid JSON: {exc.msg}"))
            continue
        except RecursionError:
            errors.append(LineError(line, "not valid JSON: nested too deeply"))
            continue
        if not isinstance(record, dict):
            errors.append(LineError(line, "each line must be a JSON object"))
            continue
        yield line, record


def _json_records(text: str, errors: list[LineError]) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(LineError(exc.lineno, f"not valid JSON: {exc.msg}"))
        return
    except RecursionError:
        errors.append(LineError(1, "not valid JSON: nested too deeply"))
        return
    if not isinstance(items, list):
        errors.append(LineError(1, "a JSON batch must be an array of objects"))
        return
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            errors.append(LineError(number, "each item must be a JSON object"))
            continue
        yield number, item


def _validate(
    line: int, record: dict[str, Any], errors: list[LineError], requested_by: str | None
) -> Request | None:
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown:
        errors.append(LineError(line, f"unknown field(s) {', '.join(map(repr, unknown))}"))
        return None
    values = {
        name: (value.strip() if isinstance(value, str) else value)
        for name, value in record.items()
        if value not in (None, "")
    }
    nul = [name for name, value in values.items() if isinstance(value, str) and "\x00" in value]
    if nul:
        errors.append(LineError(line, f"{nul[0]}: contains a NUL character"))
        return None
    for flag in ("guard", "all_customers"):
        value = values.get(flag)
        if isinstance(value, str):
            if value.lower() not in _BOOLEAN_TEXT:
                errors.append(LineError(line, f"{flag}: {value!r} is not true or false"))
                return None
            values[flag] = _BOOLEAN_TEXT[value.lower()]
        elif value is not None and not isinstance(value, bool):
            errors.append(LineError(line, f"{flag}: must be true or false"))
            return None
    person = not any(values.get(name) for name in ("seat_id", "subscription_id", "order_id"))
    wrong = [name for name in (SEAT_ONLY if person else PERSON_ONLY) if name in values]
    if wrong:
        what = ("a person row (no seat, subscription or order)" if person
                else "a seat row: only person rows (no seat, subscription or order) take it")
        errors.append(LineError(line, f"{wrong[0]}: not for {what}"))
        return None
    try:
        if person:
            return PersonInput(requested_by=requested_by, **values)
        return RevocationInput(requested_by=requested_by, **values)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            errors.append(LineError(line, f"{field}: {message}" if field else message))
        return None
