"""SCIM 2.0 protocol pieces (RFC 7643/7644) shared by the ``/scim/v2`` routes: responses
and error bodies, tenant authentication by bearer token, the User model with the
Enterprise extension, request bodies, filters narrowed for the database, listings.
Models, filters, PATCH and error bodies come from ``scim2-models``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from scim2_models import (
    Context,
    EnterpriseUser,
    Error,
    InvalidSyntaxException,
    InvalidValueException,
    Meta,
    ResourceType,
    ResponseParameters,
    SCIMException,
    UnauthorizedException,
    User,
)
from scim2_models.path.expressions import CompareOperator, Comparison, FilterNode
from starlette.concurrency import run_in_threadpool

from worker.api.context import ApiContext, get_context
from worker.store.models import ScimTenant, ScimUser
from worker.store.scim import (
    tenant_by_token,
)
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.scim")

ScimUserModel = User[EnterpriseUser]


MEDIA_TYPE = "application/scim+json"


MAX_RESULTS = 200


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


def invalid(exc: ValidationError) -> SCIMException:
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


def resource_type_body(request: Request) -> dict[str, Any]:
    resource_type = ResourceType.from_resource(ScimUserModel)
    resource_type.meta = Meta(resource_type="ResourceType",
                              location=scim_url(request, "ResourceTypes/User"))
    return resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def schema_bodies(request: Request) -> list[dict[str, Any]]:
    out = []
    for model in (User, EnterpriseUser):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema",
                           location=scim_url(request, f"Schemas/{schema.id}"))
        out.append(schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return out


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(items), "startIndex": 1, "itemsPerPage": len(items),
            "Resources": items}


def scim_url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + f"/scim/v2/{path}"


def user_model(user: ScimUser) -> Any:
    return ScimUserModel.model_validate(user.resource, scim_ctx=Context.DEFAULT)


def user_body(request: Request, user: ScimUser, model: Any = None,
         ctx: Context = Context.RESOURCE_QUERY_RESPONSE,
         shown: ResponseParameters[Any] | None = None) -> dict[str, Any]:
    resource = model if model is not None else user_model(user)
    resource.id = user.id
    resource.meta = Meta(resource_type="User", created=user.created_at,
                         last_modified=user.updated_at,
                         location=scim_url(request, f"Users/{user.id}"))
    body: dict[str, Any] = resource.model_dump(scim_ctx=ctx, response_parameters=shown)
    return body


def shown_attributes(attributes: Any, excluded: Any) -> ResponseParameters[Any] | None:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 §3.9), checked against User."""
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[ScimUserModel].model_validate(
            {"attributes": attributes or None, "excluded_attributes": excluded or None})
    except ValidationError as exc:
        raise invalid(exc) from None


def stored_resource(model: Any) -> dict[str, Any]:
    """What is kept of a resource: everything but id and meta (computed on the way out)
    and the password a provider may send (never stored: nothing here signs anyone in)."""
    model.id = None
    model.meta = None
    model.password = None
    data: dict[str, Any] = model.model_dump(scim_ctx=Context.DEFAULT)
    return data


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidSyntaxException(detail="the body is not JSON") from None


def validated_user(payload: Any, ctx: Context) -> Any:
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    try:
        model = ScimUserModel.model_validate(payload, scim_ctx=ctx)
    except ValidationError as exc:
        raise invalid(exc) from None
    return model


def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
    return run_in_threadpool(fn, *args, **kwargs)


def narrowing(node: FilterNode) -> dict[str, str]:
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


def int_param(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer") from None
