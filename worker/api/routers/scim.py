"""SCIM 2.0 (RFC 7643/7644) service provider under ``/scim/v2``: what identity providers
(Okta, Microsoft Entra ID, OneLogin, JumpCloud) call to deprovision people.

One tenant per Polar customer (``seat-revoker scim-tenant create``): its bearer token
selects the tenant, and every read and write stays within it. Creating a user records the
identity mapping only; deactivating it (``active: false`` by PUT or PATCH) or deleting it
records a person offboarding (``worker.jobs.person``) in the tenant's customer scope, named by
the user's work email. Reactivating assigns nothing back, and the answer says so in the
``Seat-Revoker-Notice`` header. Models, filters, PATCH (Entra's ``"Replace"`` and
``"False"``, Okta's path-less value object) and error bodies come from ``scim2-models``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    Error,
    ETag,
    Filter,
    InvalidFilterException,
    InvalidSyntaxException,
    NotFoundException,
    Patch,
    PatchOp,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    ServiceProviderConfig,
    Sort,
    UniquenessException,
)

from worker.api.context import ApiContext
from worker.api.scim_protocol import (
    MAX_RESULTS,
    Ctx,
    ScimUserModel,
    Tenant,
    error_response,
    in_thread,
    int_param,
    invalid,
    json_body,
    listing,
    narrowing,
    resource_type_body,
    schema_bodies,
    scim_response,
    shown_attributes,
    stored_resource,
    user_body,
    user_model,
    validated_user,
)
from worker.intake.producer import NotSent
from worker.intake.scim import offboarding, person_email, unidentifiable_row
from worker.store.models import ScimTenant, ScimUser, utcnow
from worker.store.scim import (
    UserNameTaken,
    add_user,
    get_user,
    save_user,
    tenant_users,
)
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.scim")

router = APIRouter(prefix="/scim/v2", tags=["scim"])


NOTICE = "Seat-Revoker-Notice"


REACTIVATED = ("reactivated: seats revoked when the user was deactivated are not "
               "re-assigned; assign them again in Polar")


@router.get("/ServiceProviderConfig")
def service_provider_config(_: Tenant) -> JSONResponse:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Bearer token",
            description="The tenant's token from `seat-revoker scim-tenant create`",
            primary=True)],
    )
    return scim_response(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


@router.get("/ResourceTypes")
def resource_types(request: Request, _: Tenant) -> JSONResponse:
    return scim_response(listing([resource_type_body(request)]))


@router.get("/ResourceTypes/{name}")
def resource_type(name: str, request: Request, _: Tenant) -> JSONResponse:
    if name != "User":
        raise NotFoundException(detail=f"no resource type {name!r}")
    return scim_response(resource_type_body(request))


@router.get("/Schemas")
def schemas(request: Request, _: Tenant) -> JSONResponse:
    return scim_response(listing(schema_bodies(request)))


@router.get("/Schemas/{schema_id}")
def schema(schema_id: str, request: Request, _: Tenant) -> JSONResponse:
    for found in schema_bodies(request):
        if found["id"] == schema_id:
            return scim_response(found)
    raise NotFoundException(detail=f"no schema {schema_id!r}")


@router.post("/Users")
async def create_user(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    model = validated_user(await json_body(request), Context.RESOURCE_CREATION_REQUEST)
    active = model.active is not False
    model.active = active
    user_id = str(uuid.uuid4())
    try:
        user = await in_thread(add_user, context.store, tenant.id, user_id, model.user_name,
                          model.external_id, active, stored_resource(model))
    except UserNameTaken:
        raise UniquenessException(detail="a user with this userName exists") from None
    log.info("scim.user.created", tenant_id=tenant.id, user_id=user.id)
    body = user_body(request, user, ctx=Context.RESOURCE_CREATION_RESPONSE)
    return scim_response(body, 201, {"Location": body["meta"]["location"]})


@router.get("/Users/{user_id}")
async def read_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                    ) -> JSONResponse:
    user = await in_thread(_load, context, tenant, user_id)
    params = request.query_params
    shown = shown_attributes(params.get("attributes"), params.get("excludedAttributes"))
    return scim_response(user_body(request, user, shown=shown))


@router.get("/Users")
async def list_users(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    params = request.query_params
    return await _search(request, tenant, context, params.get("filter"),
                         params.get("startIndex"), params.get("count"),
                         shown_attributes(params.get("attributes"),
                                          params.get("excludedAttributes")))


@router.post("/.search")
@router.post("/Users/.search")
async def search_users(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    """The same listing with its parameters in a ``SearchRequest`` body (RFC 7644
    §3.4.3); at the root it searches every resource type, and User is the only one."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    return await _search(request, tenant, context, body.get("filter"),
                         body.get("startIndex"), body.get("count"),
                         shown_attributes(body.get("attributes"), body.get("excludedAttributes")))


async def _search(request: Request, tenant: ScimTenant, context: ApiContext,
                  filter_text: Any, start_index: Any, count_text: Any,
                  shown: ResponseParameters[Any] | None) -> JSONResponse:
    start = int_param(start_index, "startIndex", 1)
    count = int_param(count_text, "count", MAX_RESULTS)
    start, count = max(start, 1), min(max(count, 0), MAX_RESULTS)
    wanted = None
    if filter_text:
        try:
            wanted = ScimFilter[ScimUserModel](str(filter_text))
        except SCIMException:
            raise
        except (ValueError, ValidationError):
            raise InvalidFilterException(detail="the filter cannot be parsed") from None
    users = await in_thread(tenant_users, context.store, tenant.id,
                       **(narrowing(wanted.ast) if wanted is not None else {}))
    matched = []
    for user in users:
        model = user_model(user)
        if wanted is None or wanted.match(model):
            matched.append((user, model))
    page = matched[start - 1: start - 1 + count]
    return scim_response({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(matched), "startIndex": start, "itemsPerPage": len(page),
        "Resources": [user_body(request, u, m, shown=shown) for u, m in page],
    })


@router.put("/Users/{user_id}")
async def replace_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                       ) -> JSONResponse:
    model = validated_user(await json_body(request), Context.RESOURCE_REPLACEMENT_REQUEST)
    user = await in_thread(_load, context, tenant, user_id)
    return await _write(request, context, tenant, user, model)


@router.patch("/Users/{user_id}")
async def patch_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                     ) -> JSONResponse:
    payload = await json_body(request)
    try:
        patch = PatchOp[ScimUserModel].model_validate(
            payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    except ValidationError as exc:
        raise invalid(exc) from None
    user = await in_thread(_load, context, tenant, user_id)
    model = user_model(user)
    try:
        patch.patch(model)
    except ValidationError as exc:
        raise invalid(exc) from None
    try:
        model = ScimUserModel.model_validate(model.model_dump(scim_ctx=Context.DEFAULT),
                                             scim_ctx=Context.DEFAULT)
    except ValidationError as exc:
        raise invalid(exc) from None
    return await _write(request, context, tenant, user, model)


@router.delete("/Users/{user_id}")
async def delete_user(user_id: str, tenant: Tenant, context: Ctx) -> Response:
    user = await in_thread(_load, context, tenant, user_id)
    model = user_model(user)
    request_id = None
    if user.active or user.deactivations == 0:
        request_id = await in_thread(_offboard, context, tenant, user, model, "SCIM: user deleted")
    await in_thread(save_user, context.store, user, user_name=user.user_name,
               external_id=user.external_id, active=False, resource=user.resource,
               deactivated=request_id is not None and user.active, request_id=request_id,
               deleted=True)
    log.info("scim.user.deleted", tenant_id=tenant.id, user_id=user.id,
             offboarding_request_id=request_id)
    headers = {"Seat-Revoker-Offboarding": request_id} if request_id else None
    return Response(status_code=204, headers=headers)


def _load(context: ApiContext, tenant: ScimTenant, user_id: str) -> ScimUser:
    user = get_user(context.store, tenant.id, user_id)
    if user is None:  # another tenant's user is as unknown as a made-up id
        raise NotFoundException(detail=f"no user {user_id!r}")
    return user


async def _write(request: Request, context: ApiContext, tenant: ScimTenant, user: ScimUser,
                 model: Any) -> JSONResponse:
    """Store the user's new state; a deactivation records the person's offboarding first
    (so a provider's retry after a crash offboards again, and collapses to the first)."""
    active = model.active is not False  # a removed ``active`` deactivates nobody
    headers: dict[str, str] = {}
    request_id = None
    if user.active and not active:
        request_id = await in_thread(_offboard, context, tenant, user, model,
                                "SCIM: user deactivated")
        headers["Seat-Revoker-Offboarding"] = request_id
    elif not user.active and active:
        headers[NOTICE] = REACTIVATED
        log.info("scim.user.reactivated", tenant_id=tenant.id, user_id=user.id,
                 note="seats are not re-assigned")
    try:
        saved = await in_thread(save_user, context.store, user, user_name=model.user_name,
                           external_id=model.external_id, active=active,
                           resource=stored_resource(model), deactivated=request_id is not None,
                           request_id=request_id)
    except UserNameTaken:
        raise UniquenessException(detail="a user with this userName exists") from None
    return scim_response(user_body(request, saved), 200, headers or None)


def _offboard(context: ApiContext, tenant: ScimTenant, user: ScimUser, model: Any,
              reason: str) -> str:
    """Record (and send) the person offboarding of a deactivated or deleted user: every
    seat their address holds in the tenant's customer."""
    email = person_email(model)
    if email is None:
        (record, _created), = context.store.add_requests(
            [unidentifiable_row(tenant, user, reason, utcnow())])
        log.warning("scim.user.unidentifiable", tenant_id=tenant.id, user_id=user.id,
                    request_id=record.id)
        return record.id
    try:
        request_id = context.producer.offboard(offboarding(tenant, user, email, reason)).record.id
    except NotSent as exc:  # recorded: the scheduler sends it once Redis takes messages
        request_id = exc.results[0].record.id
    log.info("scim.user.offboarding", tenant_id=tenant.id, user_id=user.id,
             request_id=request_id)
    return request_id


READ_ONLY = re.compile(r"^(ServiceProviderConfig|ResourceTypes(/[^/]+)?|Schemas(/[^/]+)?)$")


USERS = re.compile(r"^Users(/[^/]+)?$")


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
def unknown(path: str, request: Request, _: Tenant) -> Response:
    """Anything else under /scim/v2 is a SCIM error (RFC 7644 §3.12), not FastAPI's: 405
    for a method an endpoint does not take, 404 for no endpoint."""
    if READ_ONLY.match(path) or USERS.match(path):
        return error_response(Error(status=405, detail=f"{request.method} /{path} is not "
                                                       "supported"))
    raise NotFoundException(detail=f"no SCIM endpoint /{path}")
