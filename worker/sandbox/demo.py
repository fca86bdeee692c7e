"""``seat-revoker demo``: offboard sample people end to end on this machine.

Starts (or reuses) Redis, the sandbox and one worker node, seeds seats — some already
revoked, one reassigned to a new hire, some behind injected faults — offboards everyone,
shows progress and a table of outcomes, checks each against what should happen, and stops
everything it started.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.decisions.outcomes import State
from worker.intake.producer import RevocationInput
from worker.sandbox.localstack import LocalStack

DEMO_DIR = Path("var/demo")


@dataclass
class Case:
    person: str
    request: RevocationInput
    expected: State
    note: str


def build_cases(stack: LocalStack, people: int) -> list[Case]:
    """Seed the sandbox and describe what each offboarding should end in.

    Three subscriptions of an organization with Polar's member model (``customer_id`` is
    the purchaser on every seat) and one whose seats were assigned before the member model,
    where the address is only in ``customer_email``.
    """
    subscriptions = [str(uuid.uuid4()) for _ in range(4)]
    legacy_sub = subscriptions[3]
    specs = []
    for i in range(people):
        sub = subscriptions[i % len(subscriptions)]
        specs.append({
            "subscription_id": sub,
            "status": "revoked" if i % 8 == 3 else "claimed",
            "email": f"person{i:02d}@acme.example",
            "external_id": f"E-{1000 + i}",
            "name": f"Person {i:02d}",
            "variant": "legacy_before_2026_03" if sub == legacy_sub else "current",
        })
    member_specs = [spec for spec in specs if spec["subscription_id"] != legacy_sub]
    legacy_specs = [spec for spec in specs if spec["subscription_id"] == legacy_sub]
    seats_by_email = {seat_spec["email"]: seat for seat_spec, seat in zip(
        member_specs, stack.control.create_seats(member_specs), strict=True)}
    stack.control.configure(member_model_enabled=False)
    seats_by_email.update({seat_spec["email"]: seat for seat_spec, seat in zip(
        legacy_specs, stack.control.create_seats(legacy_specs), strict=True)})
    stack.control.configure(member_model_enabled=True)

    cases: list[Case] = []
    for i, spec in enumerate(specs):
        seat, email = seats_by_email[spec["email"]], spec["email"]
        by_seat = i % 2 == 0  # half name the seat too, half only the person
        legacy = spec["subscription_id"] == legacy_sub
        by_external_id = legacy and i % 3 == 0
        request = RevocationInput(
            seat_id=seat["id"] if by_seat else None,
            subscription_id=spec["subscription_id"],
            email=None if by_external_id else email,
            external_id=spec["external_id"] if by_external_id else None,
            reason="demo offboarding",
            requested_by="demo",
        )
        how = ("legacy, by external id" if by_external_id
               else "legacy, address only in customer_email" if legacy else "")
        if spec["status"] == "revoked" and by_seat:
            cases.append(Case(email, request, State.ALREADY_REVOKED, "revoked before"))
        elif spec["status"] == "revoked":
            cases.append(Case(email, request, State.NO_ACTIVE_SEAT,
                              "revoked before: holds no seat there"))
        else:
            cases.append(Case(email, request, State.REVOKED, how))

    # Reassigned: the first person's seat was revoked and given to a new hire meanwhile.
    moved = cases[0]
    assert moved.request.seat_id is not None
    stack.control.revoke(moved.request.seat_id)
    stack.control.assign("new.hire@acme.example", subscription_id=subscriptions[0])
    cases[0] = Case(moved.person, moved.request, State.OCCUPANT_MISMATCH,
                    "seat reassigned to new.hire@: kept")
    # Stale: person 08's seat went to someone else, and person 08 got another seat.
    stale = cases[8]
    assert stale.request.seat_id is not None
    stack.control.revoke(stale.request.seat_id)
    stack.control.assign("someone.else@acme.example", subscription_id=subscriptions[0])
    stack.control.assign(stale.person, subscription_id=subscriptions[0])
    cases[8] = Case(stale.person, stale.request, State.REVOKED,
                    "stale seat id: the seat the person holds now was revoked")

    faults = [
        (1, {"status": 503, "times": 2}, "two 503s, retried"),
        (2, {"status": 502, "times": 1}, "one 502, retried"),
        (5, {"status": 429, "retry_after": 1, "times": 1}, "429 retry-after 1s, waited"),
        (6, {"hang_s": 4, "apply_then_hang": True, "times": 1}, "timeout after apply"),
    ]
    for index, rule, note in faults:
        seat_id = cases[index].request.seat_id or seats_by_email[cases[index].person]["id"]
        stack.control.add_fault(method="DELETE", seat_id=seat_id, **rule)
        cases[index] = Case(cases[index].person, cases[index].request,
                            cases[index].expected, note)
    # A job naming only the purchaser of a team's subscription: Polar puts the purchaser
    # (billing customer) in customer_id on every seat, so it identifies nobody.
    team = stack.control.create_seats([
        {"subscription_id": str(uuid.uuid4()), "email": f"colleague{n}@acme.example"}
        for n in range(2)])
    cases.append(Case("the purchaser", RevocationInput(
        subscription_id=team[0]["subscription_id"], customer_id=team[0]["customer_id"],
        reason="demo", requested_by="demo"), State.NEEDS_REVIEW,
        "names the billing customer: identifies nobody, nothing deleted"))
    missing = RevocationInput(seat_id=str(uuid.uuid4()), guard=False, reason="demo",
                              requested_by="demo")
    cases.append(Case("ghost@acme.example", missing, State.FAILED,
                      "unknown seat, unguarded: 404"))
    return cases


def run_demo(people: int = 40, concurrency: int = 2, *,
             show_state: Callable[[str], RenderableType] = str) -> int:
    """``show_state`` renders an outcome in the table (the CLI passes its colours)."""
    console = Console(width=None if sys.stdout.isatty() else 120)
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    started = time.monotonic()
    stack = LocalStack(
        workdir=DEMO_DIR,
        # The demo offboards 40 people of one customer within seconds — exactly what the
        # circuit breaker holds at the product's limits. It stays on here (every DELETE
        # reserves its place) with limits the demo does not reach; tests/integration/
        # test_breaker_flow.py shows it holding at the product's defaults.
        settings_overrides={"polar_read_timeout": 2.0, "retry_inline_max_wait": 2.0},
    )
    try:
        with console.status("starting Redis, the Polar sandbox and a worker…"):
            stack.start()
            stack.add_worker(concurrency=concurrency)
        where = "private redis-server" if stack.private_redis else stack.redis_url
        console.print(f"Redis: {where}  ·  sandbox: {stack.sandbox.url if stack.sandbox else ''}"
                      f"  ·  store: {stack.database_url}")
        cases = build_cases(stack, people)
        results = stack.producer.submit_many([case.request for case in cases])
        duplicate = stack.producer.submit(cases[4].request)
        console.print(f"enqueued {len(results)} offboardings; a repeated submission of "
                      f"{cases[4].person} was deduplicated: {not duplicate.created}")
        ids = [r.record.id for r in results]
        wait_with_progress(stack, ids, console)
        records = [stack.store.get(i) for i in ids]
        return report(console, cases, records, stack, time.monotonic() - started,
                      show_state)
    finally:
        with console.status("stopping everything the demo started…"):
            stack.stop()


def wait_with_progress(stack: LocalStack, ids: list[str], console: Console,
                       timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    columns = (TextColumn("offboarding"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=len(ids), counts="")
        last_line = 0.0
        while time.monotonic() < deadline:
            states = Counter(r.state for r in (stack.store.get(i) for i in ids) if r)
            done = sum(n for s, n in states.items() if State(s).is_terminal)
            counts = " ".join(f"{s}={n}" for s, n in sorted(states.items()))
            progress.update(task, completed=done, counts=counts)
            if not console.is_terminal and time.monotonic() - last_line > 2:
                print(f"progress: {done}/{len(ids)} {counts}", flush=True)
                last_line = time.monotonic()
            if done == len(ids):
                return
            time.sleep(0.2)


def report(console: Console, cases: list[Case], records: Sequence[object], stack: LocalStack,
           elapsed: float, show_state: Callable[[str], RenderableType] = str) -> int:
    table = Table(title="Offboarding outcomes")
    for column in ("person", "seat", "outcome", "expected", "verified", "attempts", "note"):
        table.add_column(column)
    wrong = 0
    for case, record in zip(cases, records, strict=True):
        state = getattr(record, "state", "missing")
        ok = state == case.expected
        wrong += not ok
        table.add_row(case.person, (case.request.seat_id or "")[:8], show_state(state),
                      case.expected.value + ("" if ok else "  [bold red]✗[/]"),
                      _verified(record), str(getattr(record, "attempts", "")), case.note)
    console.print(table)
    counts = Counter(getattr(r, "state", "missing") for r in records)
    stats = stack.control.stats()
    # The demo's own set-up revoked two seats (to reassign them); the sandbox's record of
    # every revocation's occupant shows whether anyone else lost a seat.
    named = {case.person.casefold() for case in cases}
    bystanders = [entry for entry in stack.control.revocations()
                  if (entry.get("email") or "").casefold() not in named]
    double = [s for s, n in stats["revocations_by_seat"].items() if n > 1]
    console.print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    console.print(f"Polar saw {stats['requests']} requests; seats revoked twice: {len(double)}; "
                  f"elapsed {elapsed:.1f}s")
    console.print(f"seats of people not named that were revoked: {len(bystanders)}")
    if wrong or double or bystanders:
        console.print(f"[bold red]{wrong} outcomes differ from what should happen[/]")
        return 1
    console.print("[bold green]every seat ended in its right state[/]")
    return 0


def _verified(record: object) -> str:
    verified = getattr(record, "end_state_verified", None)
    return "" if verified is None else ("yes" if verified else "no")


if __name__ == "__main__":
    sys.exit(run_demo())
