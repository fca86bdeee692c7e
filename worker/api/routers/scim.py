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

import json
import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    InvalidFilterException,
    InvalidSyntaxException,
    InvalidValueException,
    Meta,
    NotFoundException,
    Patch,
    PatchOp,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
    UniquenessException,
    User,
)
from scim2_models.path.expressions import CompareOperator, Comparison, FilterNode
from starlette.concurrency import run_in_threadpool

from worker.api.context import ApiContext, get_context
from worker.decisions.outcomes import State
from worker.intake.producer import NotSent
from worker.intake.requests import PersonInput
from worker.store.models import ScimTenant, ScimUser, utcnow
from worker.store.scim import (
    UserNameTaken,
    add_user,
    get_user,
    save_user,
    tenant_by_token,
    tenant_users,
)
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.scim")

router = APIRouter(prefix="/scim/v2", tags=["scim"])
ScimUserModel = User[EnterpriseUser]
MEDIA_TYPE = "application/scim+json"
MAX_RESULTS = 200
NOTICE = "Seat-Revoker-Notice"
REACTIVATED = ("reactivated: seats revoked when the user was deactivated are not "
               "re-assigned; assign them again in Polar")
T = TypeVar("T")


def scim_response(body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def error_response(error: Error) -> JSONResponse:
    status = int(error.status or 400)
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else None
    return scim_response(error.model_dump(), status, headers)


async def scim_error(_: Request, exc: Exception) -> Response:
    """A ``SCIMException`` raised by a route: its SCIM error body (RFC 7644 §3.12)."""
    assert isinstance(exc, SCIMException)
    return error_response(exc.to_error())


def _invalid(exc: ValidationError) -> SCIMException:
    """A payload scim2-models refused: the first error with its scimType."""
    errors = exc.errors()
    error = Error.from_validation_error(errors[0]) if errors else Error(status=400)
    return SCIMException.from_error(error)


async def tenant_of(request: Request, context: Annotated[ApiContext, Depends(get_context)]
                    ) -> ScimTenant:
    """The tenant whose bearer token the request carries (401 otherwise). The token is
    looked up by its digest and never logged."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tenant = None
    if scheme.lower() == "bearer" and token.strip():
        tenant = await run_in_threadpool(tenant_by_token, context.store, token.strip())
    if tenant is None:
        log.warning("scim.auth_failed", client=request.client.host if request.client else None,
                    path=request.url.path)  # never the token
        raise UnauthorizedException(detail="a SCIM tenant's bearer token is required")
    return tenant


Tenant = Annotated[ScimTenant, Depends(tenant_of)]
Ctx = Annotated[ApiContext, Depends(get_context)]


# -- discovery ---------------------------------------------------------------------------


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


def _resource_type(request: Request) -> dict[str, Any]:
    resource_type = ResourceType.from_resource(ScimUserModel)
    resource_type.meta = Meta(resource_type="ResourceType",
                              location=_url(request, "ResourceTypes/User"))
    return resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _schemas(request: Request) -> list[dict[str, Any]]:
    out = []
    for model in (User, EnterpriseUser):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=_url(request, f"Schemas/{schema.id}"))
        out.append(schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return out


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(items), "startIndex": 1, "itemsPerPage": len(items),
            "Resources": items}


@router.get("/ResourceTypes")
def resource_types(request: Request, _: Tenant) -> JSONResponse:
    return scim_response(_listing([_resource_type(request)]))


@router.get("/ResourceTypes/{name}")
def resource_type(name: str, request: Request, _: Tenant) -> JSONResponse:
    if name != "User":
        raise NotFoundException(detail=f"no resource type {name!r}")
    return scim_response(_resource_type(request))


@router.get("/Schemas")
def schemas(request: Request, _: Tenant) -> JSONResponse:
    return scim_response(_listing(_schemas(request)))


@router.get("/Schemas/{schema_id}")
def schema(schema_id: str, request: Request, _: Tenant) -> JSONResponse:
    for found in _schemas(request):
        if found["id"] == schema_id:
            return scim_response(found)
    raise NotFoundException(detail=f"no schema {schema_id!r}")


# -- users -------------------------------------------------------------------------------


def _url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + f"/scim/v2/{path}"


def _model(user: ScimUser) -> Any:
    return ScimUserModel.model_validate(user.resource, scim_ctx=Context.DEFAULT)


def _out(request: Request, user: ScimUser, model: Any = None,
         ctx: Context = Context.RESOURCE_QUERY_RESPONSE,
         shown: ResponseParameters[Any] | None = None) -> dict[str, Any]:
    resource = model if model is not None else _model(user)
    resource.id = user.id
    resource.meta = Meta(resource_type="User", created=user.created_at,
                         last_modified=user.updated_at, location=_url(request, f"Users/{user.id}"))
    body: dict[str, Any] = resource.model_dump(scim_ctx=ctx, response_parameters=shown)
    return body


def _shown(attributes: Any, excluded: Any) -> ResponseParameters[Any] | None:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 §3.9), checked against User."""
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[ScimUserModel].model_validate(
            {"attributes": attributes or None, "excluded_attributes": excluded or None})
    except ValidationError as exc:
        raise _invalid(exc) from None


def _stored(model: Any) -> dict[str, Any]:
    """What is kept of a resource: everything but id and meta (computed on the way out)
    and the password a provider may send (never stored: nothing here signs anyone in)."""
    model.id = None
    model.meta = None
    model.password = None
    data: dict[str, Any] = model.model_dump(scim_ctx=Context.DEFAULT)
    return data


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidSyntaxException(detail="the body is not JSON") from None


def _validated(payload: Any, ctx: Context) -> Any:
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    try:
        model = ScimUserModel.model_validate(payload, scim_ctx=ctx)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return model


def _person_email(model: Any) -> str | None:
    """The address that names the person in Polar's seats: the primary work email, any
    work email, the primary email, the first one, else a userName that is an address."""
    emails = list(model.emails or [])

    def kind(email: Any) -> str:
        return str(getattr(email.type, "value", email.type) or "")

    for pick in (lambda e: kind(e) == "work" and e.primary, lambda e: kind(e) == "work",
                 lambda e: e.primary, lambda e: True):
        for email in emails:
            if email.value and pick(email):
                return str(email.value)
    name = str(model.user_name or "")
    return name if "@" in name.strip("@") else None


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
    return run_in_threadpool(fn, *args, **kwargs)


@router.post("/Users")
async def create_user(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    model = _validated(await _body(request), Context.RESOURCE_CREATION_REQUEST)
    active = model.active is not False
    model.active = active
    user_id = str(uuid.uuid4())
    try:
        user = await _run(add_user, context.store, tenant.id, user_id, model.user_name,
                          model.external_id, active, _stored(model))
    except UserNameTaken:
        raise UniquenessException(detail="a user with this userName exists") from None
    log.info("scim.user.created", tenant_id=tenant.id, user_id=user.id)
    body = _out(request, user, ctx=Context.RESOURCE_CREATION_RESPONSE)
    return scim_response(body, 201, {"Location": body["meta"]["location"]})


@router.get("/Users/{user_id}")
async def read_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                    ) -> JSONResponse:
    user = await _run(_load, context, tenant, user_id)
    params = request.query_params
    shown = _shown(params.get("attributes"), params.get("excludedAttributes"))
    return scim_response(_out(request, user, shown=shown))


@router.get("/Users")
async def list_users(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    params = request.query_params
    return await _search(request, tenant, context, params.get("filter"),
                         params.get("startIndex"), params.get("count"),
                         _shown(params.get("attributes"), params.get("excludedAttributes")))


@router.post("/.search")
@router.post("/Users/.search")
async def search_users(request: Request, tenant: Tenant, context: Ctx) -> JSONResponse:
    """The same listing with its parameters in a ``SearchRequest`` body (RFC 7644
    §3.4.3); at the root it searches every resource type, and User is the only one."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    return await _search(request, tenant, context, body.get("filter"),
                         body.get("startIndex"), body.get("count"),
                         _shown(body.get("attributes"), body.get("excludedAttributes")))


async def _search(request: Request, tenant: ScimTenant, context: ApiContext,
                  filter_text: Any, start_index: Any, count_text: Any,
                  shown: ResponseParameters[Any] | None) -> JSONResponse:
    start = _int_param(start_index, "startIndex", 1)
    count = _int_param(count_text, "count", MAX_RESULTS)
    start, count = max(start, 1), min(max(count, 0), MAX_RESULTS)
    wanted = None
    if filter_text:
        try:
            wanted = ScimFilter[ScimUserModel](str(filter_text))
        except SCIMException:
            raise
        except (ValueError, ValidationError):
            raise InvalidFilterException(detail="the filter cannot be parsed") from None
    users = await _run(tenant_users, context.store, tenant.id,
                       **(_narrowing(wanted.ast) if wanted is not None else {}))
    matched = []
    for user in users:
        model = _model(user)
        if wanted is None or wanted.match(model):
            matched.append((user, model))
    page = matched[start - 1: start - 1 + count]
    return scim_response({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(matched), "startIndex": start, "itemsPerPage": len(page),
        "Resources": [_out(request, u, m, shown=shown) for u, m in page],
    })


def _narrowing(node: FilterNode) -> dict[str, str]:
    """What the database can select before the filter is applied to each user: the
    ``userName eq`` and ``externalId eq`` that providers look users up by."""
    if (isinstance(node, Comparison) and node.op is CompareOperator.eq
            and isinstance(node.value, str) and node.attr_path.sub_attr is None
            and node.attr_path.uri in (None, User.__schema__)):
        name = node.attr_path.attr.lower()
        if name == "username":
            return {"user_name": node.value}
        if name == "externalid":
            return {"external_id": node.value}
    return {}


def _int_param(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer") from None


@router.put("/Users/{user_id}")
async def replace_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                       ) -> JSONResponse:
    model = _validated(await _body(request), Context.RESOURCE_REPLACEMENT_REQUEST)
    user = await _run(_load, context, tenant, user_id)
    return await _write(request, context, tenant, user, model)


@router.patch("/Users/{user_id}")
async def patch_user(user_id: str, request: Request, tenant: Tenant, context: Ctx
                     ) -> JSONResponse:
    payload = await _body(request)
    try:
        patch = PatchOp[ScimUserModel].model_validate(
            payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    except ValidationError as exc:
        raise _invalid(exc) from None
    user = await _run(_load, context, tenant, user_id)
    model = _model(user)
    try:
        patch.patch(model)
    except ValidationError as exc:
        raise _invalid(exc) from None
    try:
        model = ScimUserModel.model_validate(model.model_dump(scim_ctx=Context.DEFAULT),
                                             scim_ctx=Context.DEFAULT)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await _write(request, context, tenant, user, model)


@router.delete("/Users/{user_id}")
async def delete_user(user_id: str, tenant: Tenant, context: Ctx) -> Response:
    user = await _run(_load, context, tenant, user_id)
    model = _model(user)
    request_id = None
    if user.active or user.deactivations == 0:
        request_id = await _run(_offboard, context, tenant, user, model, "SCIM: user deleted")
    await _run(save_user, context.store, user, user_name=user.user_name,
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
        request_id = await _run(_offboard, context, tenant, user, model,
                                "SCIM: user deactivated")
        headers["Seat-Revoker-Offboarding"] = request_id
    elif not user.active and active:
        headers[NOTICE] = REACTIVATED
        log.info("scim.user.reactivated", tenant_id=tenant.id, user_id=user.id,
                 note="seats are not re-assigned")
    try:
        saved = await _run(save_user, context.store, user, user_name=model.user_name,
                           external_id=model.external_id, active=active,
                           resource=_stored(model), deactivated=request_id is not None,
                           request_id=request_id)
    except UserNameTaken:
        raise UniquenessException(detail="a user with this userName exists") from None
    return scim_response(_out(request, saved), 200, headers or None)


def _offboard(context: ApiContext, tenant: ScimTenant, user: ScimUser, model: Any,
              reason: str) -> str:
    """Record (and send) the person offboarding of a deactivated or deleted user: every
    seat their address holds in the tenant's customer. Keyed by the user and how many
    times it was deactivated, so a replay collapses and a later deactivation is new."""
    email = _person_email(model)
    key = f"scim:{tenant.id}:{user.id}:{user.deactivations + 1}"
    if email is None:
        return _unidentifiable(context, tenant, user, key, reason)
    person = PersonInput(
        email=email,
        customer_id=tenant.customer_id,
        customer_external_id=tenant.customer_external_id,
        key=key,
        requested_by=f"scim:{tenant.id}",
        reason=f"{reason} ({user.user_name})",
    )
    try:
        result = context.producer.offboard(person)
        request_id = result.record.id
    except NotSent as exc:  # recorded: the scheduler sends it once Redis takes messages
        request_id = exc.results[0].record.id
    log.info("scim.user.offboarding", tenant_id=tenant.id, user_id=user.id,
             request_id=request_id)
    return request_id


def _unidentifiable(context: ApiContext, tenant: ScimTenant, user: ScimUser, key: str,
                    reason: str) -> str:
    """A user with no address was deactivated: nothing can find their seats, so this is
    recorded as a person request that needs review (listed by ``seat-revoker failed``),
    never as done."""
    now = utcnow()
    row = {
        "id": str(uuid.uuid4()), "idempotency_key": key, "kind": "person", "seat_id": None,
        "mode": "organization",
        "scope_customer_id": tenant.customer_id,
        "scope_external_customer_id": tenant.customer_external_id,
        "scope_all_customers": False,
        "state": State.NEEDS_REVIEW.value, "finished_at": now,
        "requested_by": f"scim:{tenant.id}", "reason": f"{reason} ({user.user_name})",
        "outcome_detail": (f"SCIM user {user.id} ({user.user_name}) has no email address, "
                           "the only thing that can find their seats: offboard them with "
                           "`seat-revoker offboard --email …` and cancel this one"),
        "sent_at": None,
    }
    (record, _created), = context.store.add_requests([row])
    log.warning("scim.user.unidentifiable", tenant_id=tenant.id, user_id=user.id,
                request_id=record.id)
    return record.id


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
