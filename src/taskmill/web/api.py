"""The JSON API under /api/ and the Prometheus endpoint /metrics.

Same actions as the pages, same roles. A bearer token (`Authorization: Bearer ...`)
needs no CSRF token; a browser session must send its token in `X-CSRF-Token`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from taskmill.web.actions import (
    BULK_ACTIONS,
    TASK_ACTIONS,
    WORKER_ACTIONS,
    ActionError,
    ActionResult,
)
from taskmill.web.openapi import openapi_document
from taskmill.web.params import filter_from, is_row_id, page_params
from taskmill.web.stream import OutputStream

if TYPE_CHECKING:
    from taskmill.web.app import Dashboard

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _error(exc: ActionError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=exc.status)


def _done(result: ActionResult, status: int = 200) -> JSONResponse:
    body = {"message": result.message, "count": result.count, "task_id": result.task_id}
    return JSONResponse(body, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        raise ActionError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ActionError("the request body must be a JSON object")
    return body


class Api:
    """Handlers of /api/ and /metrics, on top of the dashboard's auth and actions."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    async def overview(self, request: Request) -> Response:
        self.dash.require(request)
        return JSONResponse(await run_in_threadpool(self.dash.data.overview))

    async def tasks(self, request: Request) -> Response:
        self.dash.require(request)
        before, after, limit = page_params(request.query_params)
        page = await run_in_threadpool(
            self.dash.data.task_page, filter_from(request.query_params), before, after, limit
        )
        return JSONResponse(
            {
                "tasks": [self.dash.data.task_summary(t) for t in page.tasks],
                "older_than": page.older_than,
                "newer_than": page.newer_than,
            }
        )

    async def task(self, request: Request) -> Response:
        self.dash.require(request)
        task_id = int(request.path_params["task_id"])
        detail = await run_in_threadpool(self.dash.data.task_detail, task_id)
        if detail is None:
            return JSONResponse({"error": f"no task {task_id}"}, status_code=404)
        return JSONResponse(detail)

    async def output_stream(self, request: Request) -> Response:
        """Server-sent events with the output of the task's run (see stream.py)."""
        self.dash.require(request)
        task_id = int(request.path_params["task_id"])
        raw_run = (request.query_params.get("run_id") or "").strip()
        if raw_run and not raw_run.isdigit():
            return JSONResponse({"error": "run_id must be a run id (a number)"}, status_code=400)
        run_id = int(raw_run) if raw_run else None
        if not is_row_id(task_id) or (
            await run_in_threadpool(self.dash.scheduler.store.get_task, task_id) is None
        ):
            return JSONResponse({"error": f"no task {task_id}"}, status_code=404)
        if run_id is not None:
            run = (
                await run_in_threadpool(self.dash.admin.get_run, run_id)
                if is_row_id(run_id)
                else None
            )
            if run is None or run.task_id != task_id:
                return JSONResponse(
                    {"error": f"task {task_id} has no run {run_id}"}, status_code=404
                )
        stream = OutputStream(self.dash.data, task_id, run_id, **self.dash.stream_options)
        return StreamingResponse(
            stream.events(),
            media_type="text/event-stream",
            # nginx and the like would otherwise hold the events back in a buffer
            headers={"x-accel-buffering": "no"},
        )

    async def workers(self, request: Request) -> Response:
        self.dash.require(request)
        return JSONResponse({"workers": await run_in_threadpool(self.dash.data.workers)})

    async def audit(self, request: Request) -> Response:
        self.dash.require(request)
        entries = await run_in_threadpool(self.dash.audit.recent, 100, None)
        return JSONResponse(
            {
                "entries": [
                    {
                        "id": e.id,
                        "created_at": e.created_at.isoformat(timespec="seconds"),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "detail": e.detail,
                    }
                    for e in entries
                ]
            }
        )

    async def queue(self, request: Request) -> Response:
        who = self.dash.require(request)
        await self.dash.check_csrf(request, who)
        try:
            body = await _json_body(request)
            result = await run_in_threadpool(
                self.dash.actions.queue,
                who,
                str(body.get("function", "")),
                body.get("args", []),
                body.get("vars", {}),
                body,
            )
        except ActionError as exc:
            return _error(exc)
        return _done(result, status=201)

    async def task_action(self, request: Request) -> Response:
        who = self.dash.require(request)
        await self.dash.check_csrf(request, who)
        task_id = int(request.path_params["task_id"])
        action = request.path_params.get("action") or "delete"
        try:
            result = await run_in_threadpool(self.dash.actions.task_action, who, task_id, action)
        except ActionError as exc:
            return _error(exc)
        return _done(result, status=201 if action == "clone" else 200)

    async def bulk_action(self, request: Request) -> Response:
        who = self.dash.require(request)
        await self.dash.check_csrf(request, who)
        try:
            body = await _json_body(request)
            result = await run_in_threadpool(
                self.dash.actions.bulk_action, who, str(body.get("action", "")), body.get("ids")
            )
        except ActionError as exc:
            return _error(exc)
        return JSONResponse(
            {
                "message": result.message,
                "done": {str(k): v for k, v in result.done.items()},
                "refused": {str(k): v for k, v in result.refused.items()},
            }
        )

    async def requeue_failed(self, request: Request) -> Response:
        who = self.dash.require(request)
        await self.dash.check_csrf(request, who)
        try:
            body = await _json_body(request)
            result = await run_in_threadpool(
                self.dash.actions.requeue_failed, who, filter_from(body)
            )
        except ActionError as exc:
            return _error(exc)
        return _done(result)

    async def worker_action(self, request: Request) -> Response:
        who = self.dash.require(request)
        await self.dash.check_csrf(request, who)
        try:
            body = await _json_body(request)
            result = await run_in_threadpool(
                self.dash.actions.worker_action,
                who,
                str(body.get("worker_name", "")),
                request.path_params["action"],
            )
        except ActionError as exc:
            return _error(exc)
        return _done(result)

    async def openapi(self, request: Request) -> Response:
        self.dash.require(request)
        return JSONResponse(openapi_document(TASK_ACTIONS, WORKER_ACTIONS, BULK_ACTIONS))

    async def metrics(self, request: Request) -> Response:
        self.dash.require(request)
        text = await run_in_threadpool(self.dash.data.metrics_text)
        return PlainTextResponse(text, media_type=PROMETHEUS_TYPE)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/openapi.json", self.openapi, name="api_openapi"),
            Route("/api/overview", self.overview, name="api_overview"),
            Route("/api/tasks", self.tasks, name="api_tasks"),
            Route("/api/tasks", self.queue, methods=["POST"], name="api_queue"),
            Route("/api/tasks/requeue-failed", self.requeue_failed, methods=["POST"]),
            Route("/api/tasks/bulk", self.bulk_action, methods=["POST"]),
            Route("/api/tasks/{task_id:int}", self.task, name="api_task"),
            Route("/api/tasks/{task_id:int}", self.task_action, methods=["DELETE"]),
            Route("/api/tasks/{task_id:int}/output", self.output_stream, name="api_output"),
            Route("/api/tasks/{task_id:int}/{action}", self.task_action, methods=["POST"]),
            Route("/api/workers", self.workers, name="api_workers"),
            Route("/api/workers/{action}", self.worker_action, methods=["POST"]),
            Route("/api/audit", self.audit, name="api_audit"),
            Route("/metrics", self.metrics, name="metrics"),
        ]
