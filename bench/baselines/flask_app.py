"""Bare Flask: the poll baseline (a) and the submit baseline (b).

Served by ``bench`` with the very gunicorn command line ``jobgate web`` uses
(Jobgate's gthread worker class, same workers and threads), reading the same ``JOBGATE_*``
variables for its Redis and queue.

- ``GET /poll/<key>``: ``HGETALL`` + ``EXPIRE`` of one hash (one pipelined
  round trip), answered as JSON: what a hand-rolled status endpoint does.
- ``POST /submit``: parse the JSON body, ``apply_async`` a no-op task
  (ignore_result), answer 202 with an id.
"""

from __future__ import annotations

import os
import uuid

import redis
from flask import Flask, Response, jsonify, request

from bench.baselines.celery_app import NOOP, make_app

REDIS_URL = os.environ["JOBGATE_REDIS_URL"]
QUEUE = os.environ["JOBGATE_QUEUE"]
THREADS = int(os.environ.get("JOBGATE_WEB_THREADS", "256"))
POLL_PREFIX = "bench:poll:"
POLL_TTL = 60

pool = redis.ConnectionPool.from_url(REDIS_URL, max_connections=THREADS + 16, decode_responses=True)
client = redis.Redis(connection_pool=pool)
celery = make_app(REDIS_URL, QUEUE)
noop = celery.tasks[NOOP]

app = Flask("bench-baseline")


@app.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@app.get("/poll/<key>")
def poll(key: str) -> tuple[Response, int]:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(POLL_PREFIX + key)
    pipe.expire(POLL_PREFIX + key, POLL_TTL)
    record, _ = pipe.execute()
    if not record:
        return jsonify(error="not found"), 404
    return jsonify(record), 202


@app.post("/submit")
def submit() -> tuple[Response, int, dict[str, str]]:
    body = request.get_json()
    task_id = uuid.uuid4().hex
    noop.apply_async(args=[body], task_id=task_id, queue=QUEUE)
    return jsonify(id=task_id, status="PENDING"), 202, {"Location": f"/tasks/{task_id}"}
