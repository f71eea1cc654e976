"""The web dashboard and JSON API: `create_app(scheduler)` is an ASGI app."""

from taskmill.web.app import create_app
from taskmill.web.auth import AuthConfig, Role, hash_password

__all__ = ["AuthConfig", "Role", "create_app", "hash_password"]
