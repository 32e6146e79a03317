"""Watching the service: Prometheus metrics at /metrics and one JSON log object per line.

Metrics use prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (gunicorn
workers each write their own files, /metrics sums them) and the process registry otherwise.
Ledger figures come from the ledger's signals, so the ledger does not know about them.
This runs on every request: a few dictionary lookups, two metric updates and one log line.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import sys
import time
from collections import Counter as Tally

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    abort,
    current_app,
    g,
    has_request_context,
    request,
)
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import batch, errors, ledger, ledger_pool, replica
from .extensions import csrf, db
from .jsonlog import JsonFormatter, LineHandler

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LOGGER_ROOT = "wallet_web"  # the app's logger: Flask logs unhandled exceptions there
access_log = logging.getLogger(f"{LOGGER_ROOT}.access")

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROCESS_DIR:  # also in CLI processes (db upgrade, seed.py) that run before gunicorn
    os.makedirs(MULTIPROCESS_DIR, exist_ok=True)

LATENCY_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
LOCK_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
HTTP_LABELS = ("route", "method", "status")

REQUESTS = Counter("wallet_http_requests", "HTTP requests by route, method and status",
                   HTTP_LABELS)
LATENCY = Histogram("wallet_http_request_duration_seconds",
                    "Time to build the response, by route, method and status", HTTP_LABELS,
                    buckets=LATENCY_BUCKETS)
TRANSACTIONS = Counter("wallet_ledger_transactions", "Posted ledger transactions",
                       ("kind", "asset"))
REPLAYS = Counter("wallet_ledger_idempotent_replays",
                  "Requests answered with the stored transaction of their reference_id", ("kind",))
REFUSALS = Counter("wallet_ledger_refusals", "Ledger requests refused, by error code",
                   ("kind", "code"))
INSUFFICIENT_FUNDS = Counter("wallet_ledger_insufficient_funds",
                             "Debits refused for insufficient funds", ("kind", "asset"))
LOCK_WAIT = Histogram("wallet_ledger_lock_wait_seconds",
                      "Time of the locking write step (wallet row locks held or awaited)",
                      ("kind",), buckets=LOCK_BUCKETS)
POOL_CHECKED_OUT = Gauge("wallet_db_pool_checked_out_connections",
                         "Database connections in use, the engine's and the ledger pool's "
                         "(summed over live workers)",
                         multiprocess_mode="livesum")
DB_READS = Counter("wallet_db_reads", "Marked reads (replica.py) by the database that served "
                   "them and why", ("target", "reason"))
REPLICA_LAG = Gauge("wallet_db_replica_lag_seconds", "How far the replica's replay was behind "
                    "at its last check (0: caught up); the largest over live workers",
                    multiprocess_mode="livemax")

metrics_bp = Blueprint("metrics", __name__)
TOKEN_NEEDED = ("/metrics is closed in production until you set METRICS_TOKEN; then scrape it "
                "with Authorization: Bearer <token>.\n")


# ---------------------------------------------------------------- /metrics


@metrics_bp.get("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if not token and current_app.config["WALLET_ENV"] == "production":
        return Response(TOKEN_NEEDED, status=403, mimetype="text/plain")
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""),
                                         f"Bearer {token}"):
        abort(401)
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if not MULTIPROCESS_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# ---------------------------------------------------------------- the request path


def start_request() -> None:
    state = g._get_current_object()  # each use of a proxy (g, request) is a context lookup
    state.started = time.perf_counter()
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    state.request_id = offered if SAFE_REQUEST_ID.fullmatch(offered) else os.urandom(8).hex()


def finish_request(response: Response) -> Response:
    state = g._get_current_object()
    started = getattr(state, "started", None)
    if started is None:  # a request that failed before start_request ran
        return response
    seconds = time.perf_counter() - started
    current = request._get_current_object()
    rule = current.url_rule
    labels = (rule.rule if rule is not None else "unmatched", current.method,
              str(response.status_code))
    _child(REQUESTS, *labels).inc()
    _child(LATENCY, *labels).observe(seconds)
    response.headers[REQUEST_ID_HEADER] = state.request_id
    if access_log.isEnabledFor(logging.INFO):
        fields = _request_fields(current, state, response, seconds)
        access_log.info("request", extra={"fields": fields})
    return response


# Labelled metrics by (metric, labels): labels() validates its arguments on every call, and
# these run on every request and movement.
_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    """metric.labels(*labels), looked up once per label set."""
    child = _children.get((metric, labels))
    if child is None:
        child = _children[metric, labels] = metric.labels(*labels)
    return child


def _request_fields(current: Request, state, response: Response, seconds: float) -> dict:
    """What one request did, by whom: names and ids only, never a key, token or password."""
    fields = {"method": current.method, "path": current.path, "status": response.status_code,
              "duration_ms": round(seconds * 1000, 2)}
    caller = getattr(state, "api_key", None)
    if caller is not None:
        fields.update(api_key=caller.name, api_key_id=caller.id)
    operator = getattr(getattr(state, "_login_user", None), "username", None)  # Flask-Login's
    if operator is not None:
        fields["operator"] = operator
    if hasattr(state, "transaction_id"):
        fields.update(transaction_id=state.transaction_id, replayed=state.replayed)
    return fields


# ---------------------------------------------------------------- ledger signals


def on_posted(kind: str, receipt: ledger.Receipt, asset: str | None) -> None:
    if receipt.replayed:
        _child(REPLAYS, kind).inc()
    else:
        _child(TRANSACTIONS, kind, asset or "multi").inc()
    if has_request_context():
        state = g._get_current_object()
        state.transaction_id, state.replayed = receipt.id, receipt.replayed


def on_refused(kind: str, error: errors.LedgerError, asset: str | None) -> None:
    REFUSALS.labels(kind, error.code).inc()
    if isinstance(error, errors.InsufficientFunds):
        INSUFFICIENT_FUNDS.labels(kind, asset or "multi").inc()


def on_batch(_sender, outcomes: list, items: list) -> None:
    """A batch's items counted like single movements, one update per label set."""
    posted, replays, refusals, short = Tally(), Tally(), Tally(), Tally()
    for item, outcome in zip(items, outcomes):
        kind = getattr(item, "kind", "batch")
        if outcome.error is not None:
            refusals[kind, outcome.error.code] += 1
            if isinstance(outcome.error, errors.InsufficientFunds):
                short[kind, item.asset] += 1
        elif outcome.receipt.replayed:
            replays[kind] += 1
        else:
            posted[kind, item.asset] += 1
    for labels, count in posted.items():
        TRANSACTIONS.labels(*labels).inc(count)
    for kind, count in replays.items():
        REPLAYS.labels(kind).inc(count)
    for labels, count in refusals.items():
        REFUSALS.labels(*labels).inc(count)
    for labels, count in short.items():
        INSUFFICIENT_FUNDS.labels(*labels).inc(count)


def on_locked(kind: str, seconds: float) -> None:
    _child(LOCK_WAIT, kind).observe(seconds)


def watch_pools(engine: Engine) -> None:
    """Connections in use: the engine's and the ledger pool's (ledger_pool.py)."""
    holder = ledger_pool.get()
    if holder is not None:
        holder.watch(POOL_CHECKED_OUT.inc, POOL_CHECKED_OUT.dec)

    @event.listens_for(engine, "checkout")
    def checked_out(*_):
        POOL_CHECKED_OUT.inc()

    @event.listens_for(engine, "checkin")
    def checked_in(*_):
        POOL_CHECKED_OUT.dec()


def on_read_routed(target: str, reason: str) -> None:
    _child(DB_READS, target, reason).inc()


def on_replica_lag(_sender, seconds: float) -> None:
    REPLICA_LAG.set(seconds)


# ---------------------------------------------------------------- logs


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the app's loggers; set up once per process. The JSON lines
    show no source line, thread or process of a record, so the logging module is told not to
    collect them (its documented switches: the caller's frame is looked up by walking the
    stack for every record otherwise)."""
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger(LOGGER_ROOT)
    logger.setLevel(level.upper())
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)  # before Flask's first app.logger: it then adds no handler
    logger.propagate = False


def init_app(app: Flask) -> None:
    configure_logging(app.config.get("LOG_LEVEL", "INFO"))
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)  # before any abort
    app.after_request(finish_request)
    csrf.exempt(metrics_bp)
    app.register_blueprint(metrics_bp)
    with app.app_context():
        watch_pools(db.engine)
    ledger.transaction_posted.connect(on_posted)
    ledger.transaction_refused.connect(on_refused)
    ledger.wallets_locked.connect(on_locked)
    batch.batch_written.connect(on_batch)
    replica.read_routed.connect(on_read_routed)
    replica.lag_measured.connect(on_replica_lag)
