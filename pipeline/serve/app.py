"""The HTTP API and the page: FastAPI routes over a ``jobs.Board``.

    POST   /v1/videos                    multipart field ``file`` -> 202 {"id", "status", "url"}
    GET    /v1/videos/{id}               status and progress, then the result (``predict --json``'s fields)
    GET    /v1/videos/{id}/explanation.png   the Grad-CAM + attention picture
    DELETE /v1/videos/{id}               delete a finished job, its upload and picture now
    GET    /v1/model                     the run's provenance (weights, checksum, members, threshold)
    GET    /healthz                      liveness and queue figures (no token needed)
    GET    /                             the page (static/), /docs the OpenAPI docs

Every ``/v1`` call needs ``Authorization: Bearer TOKEN`` when the server has a token. Errors are JSON
``{"detail": "one line"}``.
"""
from __future__ import annotations

import hmac
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from pipeline import __version__
from pipeline.serve.config import ServeConfig
from pipeline.serve.jobs import Board, Job, QueueFull
from pipeline.serve.uploads import FIELD, UPLOAD, UploadError, check_video, receive

STATIC = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                                           "frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary", "description": "the video (any container "
                                                                                "ffmpeg reads)"}}}}}}}


def _reason(status: int, detail: str, headers: dict | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


def create_app(cfg: ServeConfig, board: Board) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        # uvicorn re-raises SIGTERM/SIGINT once it has shut down, so this is the last code that surely runs:
        # stop the worker and delete every upload, result and picture.
        board.stop()
        board.uploads.close()

    app = FastAPI(title="deepfake-ensemble", version=__version__, lifespan=lifespan,
                  description="Upload a video, poll its job, read the verdict with its evidence. "
                              "`/v1` calls need `Authorization: Bearer TOKEN` when the server has a token.")
    bearer = HTTPBearer(auto_error=False, description="the server's --token")
    model_info = {**board.scorer.model_info(),
                  "server": {"max_upload_mb": cfg.max_upload_mb, "queue": cfg.queue, "batch": cfg.batch,
                             "keep_minutes": cfg.keep_minutes, "token_required": bool(cfg.token)}}

    def authorised(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not cfg.token:
            return
        given = creds.credentials if creds is not None else ""
        if not hmac.compare_digest(given.encode(), cfg.token.encode()):
            raise _reason(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                          {"WWW-Authenticate": "Bearer"})

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization"])

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    def job_or_404(job_id: str) -> Job:
        job = board.get(job_id)
        if job is None:
            raise _reason(404, "no such job (unknown id, or its result expired and was deleted)")
        return job

    @app.post("/v1/videos", status_code=202, dependencies=[Depends(authorised)], openapi_extra=UPLOAD_BODY,
              summary="Upload a video to judge",
              responses={400: {"description": "no file, an empty file, a malformed form"},
                         413: {"description": "over --max-upload-mb"},
                         415: {"description": "the bytes are not a video"},
                         503: {"description": "the queue is full; see Retry-After"}})
    async def upload(request: Request) -> dict:
        try:
            board.check_room()               # refuse before reading a body the server cannot take
        except QueueFull as exc:
            raise _reason(503, "the queue is full; retry later", {"Retry-After": str(exc.retry_after)}) from None
        job_id = uuid.uuid4().hex
        folder = board.uploads.job_folder(job_id)
        try:
            got = await receive(request.headers.get("content-type", ""), request.headers.get("content-length"),
                                request.stream(), folder / UPLOAD, cfg.max_upload_bytes)
            await run_in_threadpool(check_video, got.path)
            board.submit(Job(job_id, folder, got.path, got.filename, got.bytes))
        except QueueFull as exc:
            board.uploads.remove(folder)
            raise _reason(503, "the queue is full; retry later", {"Retry-After": str(exc.retry_after)}) from None
        except BaseException:
            board.uploads.remove(folder)
            raise
        return {"id": job_id, "status": "queued", "url": f"/v1/videos/{job_id}"}

    @app.get("/v1/videos/{job_id}", dependencies=[Depends(authorised)], summary="A job's status, then its result")
    def status(job_id: str) -> dict:
        return board.view(job_or_404(job_id))

    @app.get("/v1/videos/{job_id}/explanation.png", dependencies=[Depends(authorised)],
             summary="The Grad-CAM + attention picture", response_class=FileResponse)
    def explanation(job_id: str):
        job = job_or_404(job_id)
        if not job.finished:
            raise _reason(409, f"not ready: the job is {job.status}")
        if job.picture is None:
            why = (job.error or "no picture for this video" if job.status == "failed" else
                   "no face found, so nothing to explain" if job.result and job.result["status"] == "no_face"
                   else "explanations are off on this server (--no-explain)")
            raise _reason(404, why)
        return FileResponse(job.picture, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.delete("/v1/videos/{job_id}", status_code=204, dependencies=[Depends(authorised)],
                summary="Delete a finished job, its upload and its picture now")
    def delete(job_id: str) -> None:
        job = job_or_404(job_id)
        if not board.remove(job.id):
            raise _reason(409, f"the job is {job.status}; it can be deleted once it has finished")

    @app.get("/v1/model", dependencies=[Depends(authorised)], summary="The run's provenance")
    def model() -> dict:
        return model_info

    @app.get("/healthz", summary="Liveness and queue figures")
    def healthz() -> JSONResponse:
        stats = board.stats()
        return JSONResponse({"status": "ok" if stats["worker_alive"] else "worker stopped", **stats},
                            status_code=200 if stats["worker_alive"] else 503)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
