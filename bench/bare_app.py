"""Baselines: bare Flask endpoints under the same gunicorn configuration as the service.

`/hello` is the framework's ceiling for a JSON answer; `/sink` reads and discards a request
body and `/source?bytes=N` streams N bytes, the ceiling for streaming through gunicorn.
"""

from __future__ import annotations

import flask

CHUNK = 1024 * 1024
app = flask.Flask(__name__)
_BLOCK = bytes(range(256)) * (CHUNK // 256)


@app.get("/hello")
def hello():
    return {"hello": "world"}


@app.put("/sink")
def sink():
    stream = flask.request.stream
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
    return {"bytes": total}


@app.get("/source")
def source():
    size = int(flask.request.args["bytes"])

    def generate():
        remaining = size
        while remaining > 0:
            piece = _BLOCK if remaining >= CHUNK else _BLOCK[:remaining]
            remaining -= len(piece)
            yield piece

    return flask.Response(
        generate(),
        headers={"Content-Length": str(size)},
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )


@app.get("/api/v1/health/live")
def live():
    return {"status": "ok"}
