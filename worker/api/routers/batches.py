"""REST for batches: upload (JSON array, JSON lines or CSV; all or nothing), list, progress,
and the CSV report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from worker.api.auth import Caller
from worker.api.context import ApiContext, get_context
from worker.api.refusals import refusal_text
from worker.api.schemas import (
    BatchCreated,
    BatchOut,
    BatchPage,
    BatchRejected,
    LineErrorOut,
    RevocationIn,
)
from worker.intake.batchfile import BatchFileError, clip, parse_batch
from worker.intake.conflicts import key_conflicts
from worker.store.batches import (
    batch_progress,
    get_batch,
    list_batches,
    report_csv,
    report_rows,
)

router = APIRouter(prefix="/v1/batches", tags=["batches"])
Context = Annotated[ApiContext, Depends(get_context)]
MAX_UPLOAD = 20 << 20

_FORMATS = {
    "application/json": "json",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}

_UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of revocations, JSON lines, CSV (header row with the "
        "same field names), or a multipart form with a `file` part.",
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": RevocationIn.model_json_schema()}
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "seat_id,subscription_id,email\n"
                "4f1c2b9e-0000-4000-8000-000000000001,9a0e1d2c-0000-4000-8000-000000000002,"
                "jane@acme.com\n",
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchCreated,
    responses={
        413: {"description": "Upload over 20 MiB"},
        415: {"description": "Unsupported content type"},
        409: {"model": BatchRejected, "description": "Lines whose idempotency key belongs "
              "to a stored request about another seat or person; nothing was enqueued"},
        422: {"model": BatchRejected, "description": "Invalid lines; nothing was enqueued"},
    },
    openapi_extra=_UPLOAD_DOC,
)
async def upload(
    request: Request,
    caller: Caller,
    context: Context,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """Validate every line first; enqueue all of them in one batch, or none."""
    data, fmt, filename = await _read_upload(request)
    try:
        parsed = parse_batch(data, fmt=fmt, filename=filename,  # type: ignore[arg-type]
                             requested_by=caller)
    except BatchFileError as exc:
        rejected = BatchRejected(
            detail=f"{len(exc.errors)} invalid line(s); nothing was enqueued",
            errors=[LineErrorOut(line=e.line, message=e.message) for e in exc.errors[:1000]],
        )
        return JSONResponse(rejected.model_dump(), status_code=422)
    conflicts = await run_in_threadpool(key_conflicts, context.store, parsed.requests)
    if conflicts:
        rejected = BatchRejected(
            detail=f"{len(conflicts)} line(s) reuse the idempotency key of a different "
            "request; nothing was enqueued",
            errors=[LineErrorOut(line=parsed.rows[c.index].line, message=clip(c.describe()))
                    for c in conflicts[:1000]],
        )
        return JSONResponse(rejected.model_dump(), status_code=status.HTTP_409_CONFLICT)
    try:
        result = await run_in_threadpool(
            lambda: context.producer.submit_batch(
                parsed.requests,
                name=name or filename,
                source=f"api:{filename}" if filename else "api",
                requested_by=caller,
                lines=[row.line for row in parsed.rows],
            )
        )
    except ValueError as exc:  # refused by the producer (e.g. an unguarded seat id)
        rejected = BatchRejected(
            detail=f"{refusal_text(exc)}; nothing was enqueued", errors=[]
        )
        return JSONResponse(rejected.model_dump(), status_code=422)
    return BatchCreated(
        batch_id=result.batch_id,
        total=result.total,
        created=result.created,
        duplicates=result.duplicates + parsed.duplicates,
        request_ids=list(result.request_ids),
    )


async def _read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5, max_part_size=MAX_UPLOAD)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, [{"loc": ["body", "file"], "msg": "a file part is required",
                                       "type": "missing"}])
        data = await upload.read(MAX_UPLOAD + 1)
        filename = (upload.filename or "")[:200] or None
        fmt = _FORMATS.get((upload.content_type or "").lower())
        if fmt is None and not filename:
            fmt = "csv"
        return _capped(data), fmt, filename
    if content_type not in _FORMATS:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send application/json, application/x-ndjson, text/csv or multipart/form-data",
        )
    data = b""
    async for chunk in request.stream():
        data += chunk
        _capped(data)
    return data, _FORMATS[content_type], None


def _capped(data: bytes) -> bytes:
    if len(data) > MAX_UPLOAD:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "upload over 20 MiB")
    return data


@router.get("", response_model=BatchPage)
def batches(
    _: Caller,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> BatchPage:
    """Batches newest first, with per-state counts."""
    summaries, total = list_batches(context.store, limit=limit, offset=offset)
    more = offset + len(summaries) < total
    return BatchPage(
        items=[BatchOut.of(s) for s in summaries],
        total=total,
        next_offset=offset + len(summaries) if more else None,
    )


@router.get("/{batch_id}", response_model=BatchOut, responses={404: {}})
def batch(batch_id: str, _: Caller, context: Context) -> BatchOut:
    """Progress of one batch: counts by state, done, elapsed seconds."""
    summary = batch_progress(context.store, batch_id)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    return BatchOut.of(summary)


@router.get(
    "/{batch_id}/report.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {}},
)
def report(batch_id: str, _: Caller, context: Context) -> StreamingResponse:
    """One CSV row per request of the batch: outcome, seat snapshot, attempts, error."""
    if get_batch(context.store, batch_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    rows = report_rows(context.store, batch_id)
    return StreamingResponse(
        report_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
    )
