"""Every request's own steps, in one ``before_request`` and one ``after_request`` handler.

Flask runs each registered handler through ``ensure_sync`` and each step would look up the
request, ``g`` and the app through werkzeug's context proxies again; one pass per phase
looks them up once and hands them on. The order is the whole contract:

before the view
  1. the request id and arrival time (``requestlog.start``): every answer, errors too, has
     an id;
  2. the in-progress gauge (``metrics.started``);
  3. the pipeline (``pipeline.run``): authenticate, tenant, rate limits, permission.

after the view (also after an error answer)
  1. the request's count and latency (``metrics.observe``);
  2. the ``RateLimit-*`` headers of the budget spent (``pipeline.report_budget``);
  3. ``X-Request-ID`` and the access line (``requestlog.finish``), last, so its status and
     duration are the answer's.

At teardown the in-progress gauge comes down (``metrics.finished``); the database
connection goes back to its pool in ``db.init_database``'s own handler.
"""

from __future__ import annotations

from typing import Any

import flask

from ctxcloud import metrics, pipeline, requestlog


def _current() -> tuple[flask.Flask, flask.Request, Any]:
    """The app, request and ``g`` behind werkzeug's proxies, looked up once per phase."""
    return (
        flask.current_app._get_current_object(),  # type: ignore[attr-defined]
        flask.request._get_current_object(),  # type: ignore[attr-defined]
        flask.g._get_current_object(),  # type: ignore[attr-defined]
    )


def _before() -> None:
    app, request, g = _current()
    requestlog.start(request, g)
    metrics.started(app, g)
    pipeline.run(app, request, g)


def _after(response: flask.Response) -> flask.Response:
    app, request, g = _current()
    response = metrics.observe(app, request, g, response)
    response = pipeline.report_budget(g, response)
    return requestlog.finish(request, g, response)


def _teardown(_exc: BaseException | None) -> None:
    app, _, g = _current()
    metrics.finished(app, g)


def init_request_cycle(app: flask.Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
