"""The dashboard: a Starlette app with HTML pages, a JSON API and /metrics.

`create_app(scheduler)` returns an ASGI app to serve with uvicorn (`taskmill
dashboard`) or to mount inside an existing site. Everything comes from the tables,
so what it shows survives restarts; the app keeps no state of its own but the
signed session cookie.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskmill.scheduler import Scheduler
from taskmill.states import TaskStatus
from taskmill.store.admin import AdminQueries
from taskmill.store.audit import AuditLog
from taskmill.web import api
from taskmill.web.actions import BULK_ACTIONS, TASK_ACTIONS, ActionError, Actions
from taskmill.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    AuthConfig,
    LoginThrottle,
    Principal,
    Role,
    csrf_token,
    csrf_valid,
)
from taskmill.web.data import DashboardData, Redactor
from taskmill.web.params import filter_from, filter_query, int_or_none, page_params

HERE = Path(__file__).parent
SESSION_MAX_AGE = 12 * 3600

ACTION_LABELS = {
    "run-now": "Run now",
    "clone": "Clone",
    "stop": "Stop",
    "requeue": "Requeue",
    "enable": "Enable",
    "disable": "Disable",
    "delete": "Delete",
}
ACTION_HELP = {
    "run-now": "QUEUED: make it due now; finished: queue it again, due now",
    "clone": "queue a new task with the same function, arguments and schedule",
    "stop": "QUEUED or ASSIGNED: stop at once; RUNNING: its worker kills it",
    "requeue": "FAILED, TIMEOUT, STOPPED or EXPIRED back to QUEUED",
    "enable": "let workers pick it up",
    "disable": "keep workers from picking it up",
    "delete": "delete the task and its runs",
}

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class LoginRequired(Exception):
    """No valid session or token: pages redirect to the login form, the API says 401."""


class Forbidden(Exception):
    """Authenticated but not allowed (read-only role, missing or wrong CSRF token)."""


class SecurityHeaders:
    """Adds the security headers to every response; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Dashboard:
    """The request handlers, holding the scheduler and the configuration."""

    def __init__(self, scheduler: Scheduler, auth: AuthConfig, redact: Redactor | None) -> None:
        self.scheduler = scheduler
        self.auth = auth
        self.admin = AdminQueries(scheduler.store)
        self.audit = AuditLog(scheduler.store.engine)
        self.data = DashboardData(scheduler, self.admin, redact)
        self.actions = Actions(scheduler, self.admin, self.audit)
        self.throttle = LoginThrottle()
        #: keyword arguments of every OutputStream (tests shorten the polling)
        self.stream_options: dict[str, float] = {}
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["age"] = format_age
        self.templates = Jinja2Templates(env=env)

    def startup(self) -> None:
        self.audit.create_table()

    # ------------------------------------------------------------ auth helpers
    def principal(self, request: Request) -> Principal | None:
        token = self.auth.check_token(request.headers.get("authorization"))
        if token is not None:
            return token
        name, role = request.session.get("user"), request.session.get("role")
        if isinstance(name, str) and name in self.auth.accounts and isinstance(role, str):
            # the role is re-read from the configuration: a demoted user loses admin at once
            return Principal(name=name, role=self.auth.accounts[name].role, via="session")
        return None

    def require(self, request: Request, role: Role = Role.READ_ONLY) -> Principal:
        who = self.principal(request)
        if who is None:
            raise LoginRequired()
        if role is Role.ADMIN and not who.is_admin:
            raise Forbidden("this needs the admin role")
        return who

    async def check_csrf(self, request: Request, who: Principal | None) -> None:
        """Cookie sessions must prove the request came from our own page."""
        if who is not None and who.via == "token":
            return
        supplied = request.headers.get(CSRF_HEADER)
        if not supplied and _is_form(request):
            value = (await request.form()).get(CSRF_FIELD)
            supplied = value if isinstance(value, str) else None
        if not csrf_valid(request.session, supplied):
            raise Forbidden("missing or invalid CSRF token")

    async def require_action(self, request: Request) -> Principal:
        who = self.require(request)
        await self.check_csrf(request, who)
        if not who.is_admin:
            raise Forbidden("this needs the admin role")
        return who

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        who = self.principal(request)
        flashes = request.session.pop("flash", [])
        base = {
            "who": who,
            "csrf_token": csrf_token(request.session),
            "csrf_field": CSRF_FIELD,
            "flashes": flashes if isinstance(flashes, list) else [],
            "statuses": [s.value for s in TaskStatus],
        }
        return self.templates.TemplateResponse(request, name, {**base, **context}, status)

    @staticmethod
    def flash(request: Request, message: str, kind: str = "info") -> None:
        request.session.setdefault("flash", []).append({"kind": kind, "message": message})

    # ----------------------------------------------------------------- login
    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", {"next": _safe_next(request), "error": None})

    async def login(self, request: Request) -> Response:
        await self.check_csrf(request, None)
        form = await request.form()
        client = request.client.host if request.client else "?"
        nxt = _safe_next(request, str(form.get("next") or ""))
        if self.throttle.blocked(client):
            context = {"next": nxt, "error": "too many failed logins; wait a minute"}
            return self.render(request, "login.html", context, status=429)
        who = await run_in_threadpool(
            self.auth.check_password, str(form.get("username", "")), str(form.get("password", ""))
        )
        if who is None:
            self.throttle.failed(client)
            context = {"next": nxt, "error": "wrong user name or password"}
            return self.render(request, "login.html", context, status=401)
        self.throttle.succeeded(client)
        request.session.clear()  # a fresh session and CSRF token after login
        request.session.update({"user": who.name, "role": who.role.value})
        return RedirectResponse(nxt or str(request.url_for("overview")), status_code=303)

    async def logout(self, request: Request) -> Response:
        await self.check_csrf(request, self.principal(request))
        request.session.clear()
        return RedirectResponse(str(request.url_for("login")), status_code=303)

    # ----------------------------------------------------------------- pages
    async def overview(self, request: Request) -> Response:
        self.require(request)
        data = await run_in_threadpool(self.data.overview)
        return self.render(request, "overview.html", {"data": data})

    async def tasks(self, request: Request) -> Response:
        self.require(request)
        task_filter = filter_from(request.query_params)
        before, after, limit = page_params(request.query_params)
        page = await run_in_threadpool(self.data.task_page, task_filter, before, after, limit)
        groups = await run_in_threadpool(self.admin.group_names)
        query = filter_query(task_filter)
        return self.render(
            request,
            "tasks.html",
            {
                "page": page,
                "rows": [self.data.task_summary(t) for t in page.tasks],
                "filter": task_filter,
                "query": query,
                "groups": groups,
                "functions": sorted(self.scheduler.tasks),
                "limit": limit,
                "bulk_actions": BULK_ACTIONS,
                "action_labels": ACTION_LABELS,
            },
        )

    async def task(self, request: Request) -> Response:
        self.require(request)
        task_id = int(request.path_params["task_id"])
        detail = await run_in_threadpool(
            functools.partial(self.data.task_detail, task_id, with_layout=True)
        )
        if detail is None:
            raise HTTPException(404, f"no task {task_id}")
        context = {
            "task": detail,
            "actions": TASK_ACTIONS,
            "action_labels": ACTION_LABELS,
            "action_help": ACTION_HELP,
        }
        return self.render(request, "task.html", context)

    async def audit_page(self, request: Request) -> Response:
        self.require(request)
        before = int_or_none(request.query_params.get("before"))
        entries = await run_in_threadpool(self.audit.recent, 100, before)
        return self.render(request, "audit.html", {"entries": entries})

    async def queue_form(self, request: Request) -> Response:
        self.require(request, Role.ADMIN)
        return self.render(
            request, "queue.html", {"functions": sorted(self.scheduler.tasks), "form": {}}
        )

    # --------------------------------------------------------------- actions
    async def queue(self, request: Request) -> Response:
        who = await self.require_action(request)
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            result = await run_in_threadpool(
                self.actions.queue,
                who,
                values.get("function", ""),
                values.get("args", "[]"),
                values.get("vars", "{}"),
                values,
            )
        except ActionError as exc:
            context = {
                "functions": sorted(self.scheduler.tasks),
                "form": values,
                "error": exc.message,
                "errors": exc.errors,
            }
            return self.render(request, "queue.html", context, status=exc.status)
        self.flash(request, result.message)
        url = request.url_for("task", task_id=result.task_id)
        return RedirectResponse(str(url), status_code=303)

    async def task_action(self, request: Request) -> Response:
        who = await self.require_action(request)
        task_id = int(request.path_params["task_id"])
        action = request.path_params["action"]
        target = task_id
        try:
            result = await run_in_threadpool(self.actions.task_action, who, task_id, action)
            self.flash(request, result.message)
            if action == "clone" and result.task_id is not None:
                target = result.task_id  # on to the new task
        except ActionError as exc:
            self.flash(request, exc.message, "error")
        if action == "delete":
            return RedirectResponse(str(request.url_for("tasks")), status_code=303)
        return RedirectResponse(str(request.url_for("task", task_id=target)), status_code=303)

    async def bulk_action(self, request: Request) -> Response:
        who = await self.require_action(request)
        form = await request.form()
        ids = [v for v in form.getlist("ids") if isinstance(v, str)]
        try:
            result = await run_in_threadpool(
                self.actions.bulk_action, who, str(form.get("action", "")), ids
            )
            self.flash(request, result.message, "error" if result.refused else "info")
            for task_id, reason in sorted(result.refused.items())[:10]:
                self.flash(request, f"task {task_id}: {reason}", "error")
        except ActionError as exc:
            self.flash(request, exc.message, "error")
        # back to the list as it was filtered
        query = filter_query(filter_from({k: v for k, v in form.items() if isinstance(v, str)}))
        return RedirectResponse(f"{request.url_for('tasks')}?{query}", status_code=303)

    async def requeue_failed(self, request: Request) -> Response:
        who = await self.require_action(request)
        form = await request.form()
        task_filter = filter_from({k: v for k, v in form.items() if isinstance(v, str)})
        try:
            result = await run_in_threadpool(self.actions.requeue_failed, who, task_filter)
            self.flash(request, result.message)
        except ActionError as exc:
            self.flash(request, exc.message, "error")
        query = filter_query(task_filter)
        return RedirectResponse(f"{request.url_for('tasks')}?{query}", status_code=303)

    async def worker_action(self, request: Request) -> Response:
        who = await self.require_action(request)
        form = await request.form()
        try:
            result = await run_in_threadpool(
                self.actions.worker_action,
                who,
                str(form.get("worker_name", "")),
                str(form.get("action", "")),
            )
            self.flash(request, result.message)
        except ActionError as exc:
            self.flash(request, exc.message, "error")
        return RedirectResponse(str(request.url_for("overview")), status_code=303)

    # ---------------------------------------------------------------- errors
    async def on_login_required(self, request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"error": "authentication required"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="taskmill"'},
            )
        url = f"{request.url_for('login')}?{urlencode({'next': request.url.path})}"
        return RedirectResponse(url, status_code=303)

    async def on_forbidden(self, request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=403)
        return PlainTextResponse(f"403 Forbidden: {exc}", status_code=403)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview, name="overview"),
            Route("/login", self.login_form, name="login"),
            Route("/login", self.login, methods=["POST"], name="login_post"),
            Route("/logout", self.logout, methods=["POST"], name="logout"),
            Route("/tasks", self.tasks, name="tasks"),
            Route("/tasks/new", self.queue_form, name="queue_form"),
            Route("/tasks/new", self.queue, methods=["POST"], name="queue"),
            Route("/tasks/requeue-failed", self.requeue_failed, methods=["POST"]),
            Route("/tasks/bulk", self.bulk_action, methods=["POST"], name="bulk_action"),
            Route("/tasks/{task_id:int}", self.task, name="task"),
            Route(
                "/tasks/{task_id:int}/{action}",
                self.task_action,
                methods=["POST"],
                name="task_action",
            ),
            Route("/workers/action", self.worker_action, methods=["POST"], name="worker_action"),
            Route("/audit", self.audit_page, name="audit"),
            *api.Api(self).routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def create_app(
    scheduler: Scheduler,
    *,
    auth: AuthConfig | None = None,
    redact: Redactor | None = None,
) -> Starlette:
    """The dashboard as an ASGI app.

    `auth` defaults to AuthConfig.from_env() (TASKMILL_DASHBOARD_* variables); with no
    password hash and no token configured this raises ConfigurationError. `redact(field,
    value, task)` may replace args, vars, output, results and tracebacks before display.
    """
    config = auth if auth is not None else AuthConfig.from_env()
    dashboard = Dashboard(scheduler, config, redact)
    dashboard.startup()
    app = Starlette(
        routes=dashboard.routes(),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=config.secret_key,
                session_cookie="taskmill_session",
                max_age=SESSION_MAX_AGE,
                same_site="lax",
                https_only=config.https_only,
            ),
        ],
        exception_handlers={
            LoginRequired: dashboard.on_login_required,
            Forbidden: dashboard.on_forbidden,
        },
    )
    app.state.dashboard = dashboard
    return app


# -------------------------------------------------------------------- helpers
def _is_form(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def _wants_json(request: Request) -> bool:
    path = str(request.scope.get("path", ""))
    root = str(request.scope.get("root_path", ""))
    local = path[len(root) :] if root and path.startswith(root) else path
    return local.startswith(("/api/", "/metrics"))


def _safe_next(request: Request, value: str | None = None) -> str:
    """A same-site path to go to after login; anything else (//evil, http://) is dropped."""
    nxt = value if value is not None else request.query_params.get("next", "")
    if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return ""


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
