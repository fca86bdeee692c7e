"""Finding requests and batches the way operators name them: a full id, the 8-character
prefix the tables print, an idempotency key, part of an email or a seat id.

``resolve_request``/``resolve_batch`` turn what was typed into exactly one row or say why
not (``NotFound``, ``Ambiguous`` listing the matches). ``text_condition`` is the dashboard's
and ``seat-revoker requests``' partial search; ``source_condition`` where a request came
from. Nothing here writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from worker.store.models import Batch, RevocationRequest
from worker.store.records import Store

MIN_PREFIX = 4  # shorter prefixes match too much to be meant
MAX_LISTED = 10  # matches named in an "ambiguous" error
_ID_CHARS = re.compile(r"^[0-9a-fA-F-]+$")

# Where a request came from, as the dashboard and `requests --source` name it.
SOURCES = ("cli", "batch", "webhook", "rest", "scim")


class LookupFailed(LookupError):
    """Base of what resolving an id can end with."""


class NotFound(LookupFailed):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"no {kind} with id, id prefix or key {text!r}")


class Ambiguous(LookupFailed):
    def __init__(self, kind: str, text: str, matches: list[str], more: bool) -> None:
        listed = ", ".join(matches) + (", …" if more else "")
        super().__init__(f"{kind} id prefix {text!r} is ambiguous: it matches {listed}; "
                         "give more characters")
        self.matches = matches


@dataclass(frozen=True)
class Found:
    kind: str  # "request" or "batch"
    id: str


def looks_like_id_prefix(text: str) -> bool:
    return len(text) >= MIN_PREFIX and bool(_ID_CHARS.match(text))


def like_escape(text: str) -> str:
    """``text`` for a LIKE pattern with ``\\`` as escape: its wildcards match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(column: Any, text: str) -> ColumnElement[bool]:
    return column.like(like_escape(text.lower()) + "%", escape="\\")  # type: ignore[no-any-return]


def _prefix_matches(store: Store, model: Any, text: str) -> tuple[list[str], bool]:
    with store.session() as session:
        ids = list(session.scalars(
            select(model.id).where(_prefix(model.id, text)).order_by(model.id)
            .limit(MAX_LISTED + 1)))
    return ids[:MAX_LISTED], len(ids) > MAX_LISTED


def _resolve(store: Store, model: Any, kind: str, text: str) -> str | None:
    """The one id ``text`` names (full id or unique prefix), ``None`` when none matches."""
    text = text.strip()
    with store.session() as session:
        if session.get(model, text) is not None:
            return text
    if not looks_like_id_prefix(text):
        return None
    ids, more = _prefix_matches(store, model, text)
    if len(ids) > 1:
        raise Ambiguous(kind, text, ids, more)
    return ids[0] if ids else None


def resolve_request(store: Store, text: str) -> RevocationRequest:
    """The request ``text`` names: its id, a unique id prefix, or its idempotency key."""
    found = _resolve(store, RevocationRequest, "request", text)
    record = store.get(found) if found else store.get_by_key(text.strip())
    if record is None:
        raise NotFound("request", text)
    return record


def resolve_batch(store: Store, text: str) -> Batch:
    found = _resolve(store, Batch, "batch", text)
    if found is None:
        raise NotFound("batch", text)
    with store.session() as session:
        batch = session.get(Batch, found)
    assert batch is not None
    return batch


def resolve_any(store: Store, text: str) -> Found:
    """A request or a batch (``status`` takes either). A prefix matching one request and
    one batch is ambiguous too."""
    matches: list[Found] = []
    errors: list[Ambiguous] = []
    for kind, model in (("request", RevocationRequest), ("batch", Batch)):
        try:
            found = _resolve(store, model, kind, text)
        except Ambiguous as exc:
            errors.append(exc)
            continue
        if found:
            matches.append(Found(kind, found))
    if errors:
        raise errors[0]
    if len(matches) > 1:
        raise Ambiguous("request or batch", text, [f"{m.kind} {m.id}" for m in matches],
                        False)
    if matches:
        return matches[0]
    record = store.get_by_key(text.strip())
    if record is not None:
        return Found("request", record.id)
    raise NotFound("request or batch", text)


def text_condition(text: str) -> ColumnElement[bool]:
    """Partial search: an id prefix (of the request, its seat, the seat asked for, its
    batch) when ``text`` looks like one; otherwise part of the email (``@acme.com``: the
    domain), or the exact external id or idempotency key."""
    model = RevocationRequest
    text = text.strip()
    either: list[ColumnElement[bool]] = [
        model.idempotency_key == text,
        model.occupant_external_id == text,
        email_condition(text),
    ]
    if looks_like_id_prefix(text):
        either += [_prefix(model.id, text), _prefix(model.seat_id, text),
                   _prefix(model.requested_seat_id, text), _prefix(model.batch_id, text)]
    return or_(*either)


def seat_condition(prefix: str) -> ColumnElement[bool]:
    """The seat id, or the stale seat id the producer asked for, starts with ``prefix``."""
    model = RevocationRequest
    return or_(_prefix(model.seat_id, prefix.strip()),
               _prefix(model.requested_seat_id, prefix.strip()))


def email_condition(part: str) -> ColumnElement[bool]:
    """The email holds ``part`` (case-insensitive): ``@acme.com`` finds a domain."""
    pattern = "%" + like_escape(part.strip().lower()) + "%"
    return func.lower(RevocationRequest.occupant_email).like(pattern, escape="\\")


def source_condition(source: str) -> ColumnElement[bool]:
    """Requests from ``source`` (one of ``SOURCES``), read from who asked and whether a
    batch carried it. ``ValueError`` for an unknown source."""
    model = RevocationRequest
    by = func.coalesce(model.requested_by, "")
    if source == "batch":
        return model.batch_id.is_not(None)
    if source == "cli":
        return and_(model.batch_id.is_(None), by.in_(["cli", "demo"]))
    if source == "webhook":
        return by.like("webhook%")
    if source == "rest":
        return and_(model.batch_id.is_(None), by.like("api:%"))
    if source == "scim":
        return by.like("scim%")
    raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")


def source_of(record: RevocationRequest) -> str:
    """The ``SOURCES`` name of one request (the same rules as ``source_condition``)."""
    by = record.requested_by or ""
    if by.startswith("webhook"):
        return "webhook"
    if by.startswith("scim"):
        return "scim"
    if record.batch_id:
        return "batch"
    if by.startswith("api:"):
        return "rest"
    return "cli" if by in ("cli", "demo") else (by or "unknown")
