"""gunicorn settings (`gunicorn wsgi:app -c gunicorn.conf.py`): every value can be set from the
environment; the defaults suit a 2-core box. See docs/operations.md."""
import glob
import logging
import os
import shutil
import sys
import tempfile

from gunicorn.glogging import Logger

# The master imports the JSON log formatter from the app package before it loads the app.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Threads, not more processes: a request mostly waits on PostgreSQL, and threads share one
# connection pool and one API-key cache per process.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# SQLite (the embedded default, no DATABASE_URL) has one writer at a time: one process whose
# threads queue on an in-process lock (extensions.py) serves more than processes that poll the
# file lock.
_sqlite = os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite")
workers = _env_int("GUNICORN_WORKERS", 1 if _sqlite else 2)
threads = _env_int("GUNICORN_THREADS", 8)
timeout = _env_int("GUNICORN_TIMEOUT", 30)  # a worker silent this long is killed and replaced
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)  # SIGTERM: finish in-flight work
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
backlog = _env_int("GUNICORN_BACKLOG", 2048)
preload_app = False  # each worker builds its app (and its pool) after the fork
control_socket_disable = True  # unused; its default path would be shared by every instance
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"  # the heartbeat file must not sit on a slow overlay disk

# The app logs each request itself as JSON (wallet_web/observability.py). No access log and no
# logconfig_dict: either makes gunicorn build its access-log atoms on every request.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


class JsonLogger(Logger):
    """gunicorn's own messages (and libraries' warnings) as JSON lines, like the app's."""

    def setup(self, cfg):
        super().setup(cfg)
        from wallet_web.jsonlog import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        if not root.handlers:
            warnings = logging.StreamHandler(sys.stderr)
            warnings.setFormatter(JsonFormatter())
            root.addHandler(warnings)
            root.setLevel(logging.WARNING)


logger_class = JsonLogger

# Prometheus multiprocess mode: each worker writes its metrics to files in this directory and
# /metrics adds them up. It must be set before any worker imports prometheus_client.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _own_metrics_dir = tempfile.mkdtemp(prefix="wallet-metrics-")  # removed again by on_exit
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir
else:
    _own_metrics_dir = None
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):
    """Start from empty metric files: the ones of a previous run would be added in."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    """A dead worker's live gauges stop counting (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
