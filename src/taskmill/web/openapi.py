"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskmill.states import TaskStatus


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "invalid input"),
    "401": _json(_ref("Error"), "not authenticated"),
    "403": _json(_ref("Error"), "read-only role, or a session without a valid CSRF token"),
    "404": _json(_ref("Error"), "no such task or worker"),
    "409": _json(_ref("Error"), "the task is in a state the action does not apply to"),
}

FILTER_PARAMETERS = [
    {"name": "status", "in": "query", "schema": {"enum": [s.value for s in TaskStatus]}},
    {"name": "group", "in": "query", "schema": {"type": "string"}},
    {"name": "function", "in": "query", "schema": {"type": "string"}},
    {
        "name": "q",
        "in": "query",
        "description": "part of task_name or args, or a whole uuid or id",
        "schema": {"type": "string"},
    },
]

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def openapi_document(
    task_actions: Sequence[str], worker_actions: Sequence[str], bulk_actions: Sequence[str]
) -> dict[str, Any]:
    object_schema = {"type": "object", "additionalProperties": True}
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskmill dashboard API", "version": "1"},
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "taskmill_session",
                    "description": "state-changing requests also need the X-CSRF-Token header",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "errors": object_schema},
                },
                "ActionResult": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "count": {"type": "integer"},
                        "task_id": {"type": ["integer", "null"]},
                    },
                },
                "QueueRequest": {
                    "type": "object",
                    "required": ["function"],
                    "properties": {
                        "function": {"type": "string", "description": "a registered name"},
                        "args": {"type": "array"},
                        "vars": {"type": "object"},
                        "task_name": {"type": "string"},
                        "group_name": {"type": "string"},
                        "cronline": {"type": "string"},
                        "repeats": {"type": "integer"},
                        "period": {"type": "integer"},
                        "timeout": {"type": "integer"},
                        "retry_failed": {"type": "integer"},
                        "retry_backoff": {"type": "integer"},
                        "sync_output": {"type": "integer"},
                        "priority": {"type": "integer"},
                    },
                },
                "BulkRequest": {
                    "type": "object",
                    "required": ["action", "ids"],
                    "properties": {
                        "action": {"enum": list(bulk_actions)},
                        "ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 500},
                    },
                },
                "BulkResult": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "done": {
                            "type": "object",
                            "description": "task id -> its clone's id (clone) or itself",
                            "additionalProperties": {"type": ["integer", "null"]},
                        },
                        "refused": {
                            "type": "object",
                            "description": "task id -> why the action was refused",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
                "Task": object_schema,
                "Overview": object_schema,
            },
        },
        "paths": {
            "/api/overview": {
                "get": {
                    "summary": "counts, queue depth, workers",
                    "responses": {"200": _json(_ref("Overview"))},
                }
            },
            "/api/tasks": {
                "get": {
                    "summary": "tasks, newest first, keyset-paginated",
                    "parameters": [
                        *FILTER_PARAMETERS,
                        {"name": "before", "in": "query", "schema": {"type": "integer"}},
                        {"name": "after", "in": "query", "schema": {"type": "integer"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "maximum": 500},
                        },
                    ],
                    "responses": {"200": _json(object_schema)},
                },
                "post": {
                    "summary": "queue a task of a registered function (admin)",
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("QueueRequest")}}
                    },
                    "responses": {"201": _json(_ref("ActionResult")), **ERRORS},
                },
            },
            "/api/tasks/requeue-failed": {
                "post": {
                    "summary": "requeue every FAILED task matching the filter (admin)",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        p["name"]: p["schema"] for p in FILTER_PARAMETERS
                                    },
                                }
                            }
                        }
                    },
                    "responses": {"200": _json(_ref("ActionResult")), **ERRORS},
                }
            },
            "/api/tasks/bulk": {
                "post": {
                    "summary": "apply one task action to each of the given tasks (admin)",
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("BulkRequest")}}
                    },
                    "responses": {"200": _json(_ref("BulkResult")), **ERRORS},
                }
            },
            "/api/tasks/{task_id}/output": {
                "get": {
                    "summary": "the output of the task's run, streamed while it runs",
                    "description": (
                        "Server-sent events (text/event-stream). `run`: a run started "
                        "({run_id, worker_name, start_time}); `output`: {run_id, append} "
                        "(text added) or {run_id, replace} (the whole output, when it did "
                        "not just grow); `end`: {run_id, status, task_status}, after which "
                        "the server closes the stream. While the task waits to run the "
                        "stream sends comments to keep the connection open. `run_id` "
                        "follows one given run instead of the task's next or current one."
                    ),
                    "parameters": [
                        TASK_ID,
                        {"name": "run_id", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **ERRORS,
                    },
                }
            },
            "/api/tasks/{task_id}": {
                "get": {
                    "summary": "a task with its schedule and runs",
                    "parameters": [TASK_ID],
                    "responses": {"200": _json(_ref("Task")), **ERRORS},
                },
                "delete": {
                    "summary": "delete a task and its runs (admin)",
                    "parameters": [TASK_ID],
                    "responses": {"200": _json(_ref("ActionResult")), **ERRORS},
                },
            },
            "/api/tasks/{task_id}/{action}": {
                "post": {
                    "summary": "a task action (admin); clone answers 201 with the new task_id",
                    "parameters": [
                        TASK_ID,
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": list(task_actions)},
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("ActionResult")),
                        "201": _json(_ref("ActionResult"), "cloned: task_id is the new task"),
                        **ERRORS,
                    },
                }
            },
            "/api/workers": {
                "get": {"summary": "workers", "responses": {"200": _json(object_schema)}}
            },
            "/api/workers/{action}": {
                "post": {
                    "summary": "send a command to a worker (admin)",
                    "parameters": [
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": list(worker_actions)},
                        }
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["worker_name"],
                                    "properties": {"worker_name": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": {"200": _json(_ref("ActionResult")), **ERRORS},
                }
            },
            "/api/audit": {
                "get": {
                    "summary": "the audit log, newest first",
                    "responses": {"200": _json(object_schema)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition",
                    "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
                }
            },
        },
    }
