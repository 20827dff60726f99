"""The HTTP server (``pip install 'vidseek[server]'``): :func:`create_app` builds the FastAPI app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MissingDependencyError

__all__ = ["create_app"]

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app


def __getattr__(name: str):
    if name == "create_app":
        try:
            from .app import create_app
        except ImportError as exc:
            raise MissingDependencyError(
                f"the server needs FastAPI and uvicorn ({exc.name} is missing): "
                "pip install 'vidseek[server]'") from exc
        return create_app
    raise AttributeError(name)
