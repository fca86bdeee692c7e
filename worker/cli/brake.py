"""The circuit breaker at the command line: ``held``, ``release``, ``reject``; and the open
breakers ``status`` shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    actor,
    emit_json,
    emit_json_lines,
    fail,
    load_settings,
)

if TYPE_CHECKING:
    from config.settings import Settings
    from worker.jobs.breaker import Breaker, OpenBreaker
    from worker.jobs.breakerdesk import Acted, BreakerDesk
    from worker.store.models import RevocationRequest


def breaker_for(settings: Settings) -> Breaker:
    """The breaker as the workers build it (its Redis keys and limits)."""
    from worker.connections import redis_client
    from worker.jobs.breaker import Breaker

    return Breaker.from_settings(
        settings, redis_client(settings.redis_url, timeout=5, connect_timeout=5))


def read_open_breakers(settings: Settings) -> list[OpenBreaker]:
    from redis.exceptions import RedisError

    try:
        return breaker_for(settings).open_breakers()
    except RedisError as exc:
        fail(f"cannot read the breaker's state from Redis ({type(exc).__name__}: {exc})",
             EXIT_FAILED)


def breaker_lines(settings: Settings, open_breakers: list[OpenBreaker],
                  held: dict[str, int] | None) -> list[str]:
    """What ``status`` says of the breaker: off, closed, or a line per open breaker."""
    if not settings.breaker_enabled:
        return ["breaker OFF (BREAKER_ENABLED=false): nothing limits how many seats are "
                "revoked"]
    if not open_breakers:
        return ["breaker closed: revocations go"]
    lines = [f"breaker OPEN ({len(open_breakers)} scope(s)): revocations of these scopes "
             "are held"]
    for info in open_breakers:
        waiting = (held or {}).get(info.scope, 0)
        lines.append(f"  {info.scope}: limit {info.limit} per {int(info.window_seconds)} s "
                     f"reached at {info.since}; {waiting} held")
    lines.append("See who would lose a seat: seat-revoker held; then seat-revoker release "
                 "SCOPE or seat-revoker reject SCOPE")
    return lines


def _desk() -> BreakerDesk:
    from worker.intake.producer import Producer
    from worker.jobs.breakerdesk import BreakerDesk

    settings = load_settings()
    return BreakerDesk(Producer(settings), breaker_for(settings))


def _held_json(record: RevocationRequest) -> dict[str, Any]:
    return {"id": record.id, "scope": record.held_scope, "kind": record.kind,
            "seat_id": record.seat_id, "subscription_id": record.subscription_id,
            "order_id": record.order_id, "email": record.occupant_email,
            "external_id": record.occupant_external_id, "parent_id": record.parent_id,
            "batch_id": record.batch_id, "detail": record.outcome_detail,
            "held_since": record.updated_at.isoformat()}


@click.command()
@click.option("--scope", help="Only this scope (org, customer:<id>).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one held request a line.")
def held(scope: str | None, as_json: bool) -> None:
    """The requests held at the circuit breaker, by scope: who would lose a seat."""
    desk = _desk()
    try:
        groups = desk.held_by_scope()
    finally:
        desk.producer.close()
    if scope is not None:
        groups = {scope: groups.get(scope, [])}
    if as_json:
        emit_json_lines(_held_json(r) for records in groups.values() for r in records)
        return
    if not any(groups.values()):
        click.echo("nothing held at the breaker")
        return
    for name, records in sorted(groups.items()):
        click.echo(f"{name}: {len(records)} held")
        for record in records:
            who = record.occupant_email or record.occupant_external_id or \
                record.occupant_member_id or "-"
            click.echo(f"  {record.id}  seat {record.seat_id or '-'}  {who}")


def _report(verb: str, acted: Acted, as_json: bool) -> None:
    if as_json:
        emit_json({verb: acted.moved, "closed": acted.closed, "not_sent": acted.not_sent})
        return
    click.echo(f"{verb} {len(acted.moved)} held request(s)")
    for scope in acted.closed:
        click.echo(f"breaker closed: {scope}")
    if acted.not_sent:
        click.echo(f"warning: {acted.not_sent}; the scheduler sends them", err=True)


def _act(verb: str, targets: tuple[str, ...], as_json: bool) -> None:
    from worker.cli.common import find_request
    from worker.jobs.breakerdesk import UnknownTarget, is_scope

    desk = _desk()
    try:
        named = [t if is_scope(t) else find_request(desk.store, t).id for t in targets]
        method = desk.release if verb == "released" else desk.reject
        acted = method(named, actor=actor())
    except UnknownTarget as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    finally:
        desk.producer.close()
    _report(verb, acted, as_json)


@click.command()
@click.argument("targets", metavar="SCOPE|REQUEST...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def release(targets: tuple[str, ...], as_json: bool) -> None:
    """Let requests held at the breaker go on: a scope (org, customer:<id>; its breaker
    closes), a held request, or a person request (its held seats). Released requests are
    revoked and count in the window; the next revocation over the limit is held again."""
    _act("released", targets, as_json)


@click.command()
@click.argument("targets", metavar="SCOPE|REQUEST...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def reject(targets: tuple[str, ...], as_json: bool) -> None:
    """End requests held at the breaker ``cancelled`` ("rejected at the breaker", with who
    rejected them): their seats are not revoked. Same targets as ``release``."""
    _act("rejected", targets, as_json)
