"""Operator actions on requests and the queue: ``retry``, ``cancel``, ``resume`` a
pause, and SCIM tenants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from worker.cli.common import (
    EXIT_FAILED,
    actor,
    fail,
    find_request,
    fleet_pause,
    load_settings,
    read_pauses,
    read_secret_file,
    utc,
    validation_text,
)
from worker.decisions.outcomes import ATTENTION_STATES
from worker.store.records import Store


@click.command()
@click.argument("scope", required=False)
@click.option("--all", "all_scopes", is_flag=True, help="Clear every pause in force.")
def resume(scope: str | None, all_scopes: bool) -> None:
    """Clear a queue pause after fixing its cause (token, scopes, POLAR_API_VERSION).

    SCOPE is as `seat-revoker status` prints it; without it, the only pause in force is
    cleared. If the cause is still there, the next request pauses the queue again.
    """
    settings = load_settings()
    if scope and all_scopes:
        fail("give a SCOPE or --all, not both")
    pause = fleet_pause(settings)
    pauses = read_pauses(settings)
    if scope:
        scopes = [scope]
    elif all_scopes or len(pauses) <= 1:
        scopes = [info.scope for info in pauses]
    else:
        fail(f"{len(pauses)} pauses in force; give a SCOPE (see seat-revoker status) or --all")
    if not scopes:
        click.echo("no pause in force")
        return
    cleared = [name for name in scopes if pause.resume(name)]
    if cleared:
        from worker.telemetry.logs import get_logger

        get_logger("seat_revoker.cli").warning("pause.resumed_by_operator", scopes=cleared,
                                               by=actor())
    if scope and not cleared:
        fail(f"no pause with scope {scope!r}", EXIT_FAILED)
    for name in cleared:
        click.echo(f"resumed {name}")


@click.command()
@click.argument("request_id")
def cancel(request_id: str) -> None:
    """Cancel a request that has not ended: scheduled, held, awaiting approval, queued or
    retrying (its next run sees the cancellation and stops). A running seat request cannot
    be cancelled (it may be sending its DELETE); a person request can, running or not: its
    seat requests that have not sent their DELETE are cancelled with it, and it makes no
    new one."""
    from worker.intake.producer import Producer

    producer = Producer(load_settings())
    try:
        record = producer.cancel(find_request(producer.store, request_id).id, actor=actor())
        note = producer.cancel_note(record)
    except ValueError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        producer.close()
    click.echo(f"cancelled {record.id}" + (f": {note}" if note else ""))


@click.command()
@click.argument("request_id", required=False)
@click.option("--all-failed", is_flag=True,
              help="Retry every failed and needs_review request.")
@click.option("--since", type=click.DateTime(), help="With --all-failed: ended since (UTC).")
@click.option("--portal-token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="A fresh customer/member session token for customer-portal requests "
              "(Polar's sessions expire after one hour).")
def retry(request_id: str | None, all_failed: bool, since: Any,
          portal_token_file: Path | None) -> None:
    """Send failed or needs_review requests again (same idempotency key, new attempt,
    history kept). Fix what a needs_review detail names first."""
    from worker.intake.producer import Producer

    if bool(request_id) == all_failed:
        fail("give a request ID or --all-failed (not both)")
    portal_token = read_secret_file(portal_token_file) if portal_token_file else None
    producer = Producer(load_settings())
    try:
        if request_id:
            ids = [find_request(producer.store, request_id).id]
        else:
            ids = [r.id for r in producer.store.find(
                states=ATTENTION_STATES, updated_since=utc(since), limit=100_000)]
        retried = 0
        who = actor()
        for rid in ids:
            try:
                producer.retry(rid, portal_token=portal_token, actor=who)
                retried += 1
            except ValueError as exc:
                if request_id:
                    fail(str(exc), EXIT_FAILED)
        click.echo(f"retried {retried} request(s)")
    finally:
        producer.close()


@click.group("scim-tenant")
def scim_tenant() -> None:
    """SCIM 2.0 tenants: one identity provider connection per Polar customer."""


@scim_tenant.command("create")
@click.option("--customer-id", help="The Polar customer (id) whose people the tenant manages.")
@click.option("--customer-external-id", help="The Polar customer, by its external id.")
@click.option("--json", "as_json", is_flag=True, help="Print the tenant and token as JSON.")
def scim_tenant_create(customer_id: str | None, customer_external_id: str | None,
                       as_json: bool) -> None:
    """Create a tenant and print its bearer token. The token is shown this once and only
    its digest is stored: give it to the identity provider as its SCIM API token, with
    the base URL https://<this service>/scim/v2."""
    from worker.intake.requests import PersonInput
    from worker.store.scim import create_tenant

    if (customer_id is None) == (customer_external_id is None):
        fail("give --customer-id or --customer-external-id")
    try:  # the same checks as a person request's scope
        PersonInput(email="check@example.com", customer_id=customer_id,
                    customer_external_id=customer_external_id)
    except ValidationError as exc:
        fail(validation_text(exc))
    store = Store.from_url(load_settings().database_url)
    created = create_tenant(store, customer_id=customer_id,
                            customer_external_id=customer_external_id, created_by="cli")
    tenant = created.tenant
    if as_json:
        click.echo(json.dumps({"tenant_id": tenant.id, "customer_id": tenant.customer_id,
                               "customer_external_id": tenant.customer_external_id,
                               "token": created.token}))
        return
    click.echo(f"tenant {tenant.id} for customer "
               f"{tenant.customer_id or 'external_id=' + str(tenant.customer_external_id)}")
    click.echo(f"token (shown once, stored hashed): {created.token}")


@scim_tenant.command("list")
def scim_tenant_list() -> None:
    """The tenants (never their tokens)."""
    from worker.store.scim import list_tenants

    for tenant in list_tenants(Store.from_url(load_settings().database_url)):
        customer = tenant.customer_id or f"external_id={tenant.customer_external_id}"
        click.echo(f"{tenant.id}  customer {customer}  created {tenant.created_at:%Y-%m-%d}")
