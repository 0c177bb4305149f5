"""The service's Flask class: Flask itself, with the one documented hook it overrides.

``Flask.ensure_sync`` runs on every request for every handler and view, and for each layer
of flask-smorest's decorators (about 19 times for a manifest GET), and each time asks
``inspect.iscoroutinefunction``, which unwraps the callable and reads its code flags. Flask
documents the method as the one to override to change how views run. For a plain function
or bound method the answer is its code object's ``CO_COROUTINE`` flag, read here directly;
anything else (partials, callable objects, ``async def``) goes to Flask's own method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import flask

_COROUTINE = inspect.CO_COROUTINE


class ServiceFlask(flask.Flask):
    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        code = getattr(func, "__code__", None)
        if code is not None and not code.co_flags & _COROUTINE:
            return func
        return super().ensure_sync(func)
