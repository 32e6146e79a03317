"""Settings read from the environment."""
import os

from .limits import BULK_FILE_MAX_BYTES

WALLET_ENVS = ("development", "test", "production")
# FULL: every commit is on disk before it is answered; NORMAL: a commit survives the app's
# crash, not the machine's (WAL without an fsync per commit). docs/operations.md.
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


def _optional_flag(name: str) -> bool | None:
    """True or False when the variable is set; None leaves the choice to create_app."""
    value = os.environ.get(name, "").strip().lower()
    return value in ("1", "true", "yes", "on") if value else None


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")  # default set in create_app
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_size": int(os.environ.get("DB_POOL_SIZE", "10")),
        "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "5")),
        "pool_timeout": float(os.environ.get("DB_POOL_TIMEOUT_SECONDS", "10")),
        "hide_parameters": True,  # a logged database error never shows the statement's values
    }
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    MAX_CONTENT_LENGTH = 64 * 1024
    MAX_BATCH_BODY = 8 * 1024 * 1024  # POST /api/v1/transactions/batch (1,000 items)
    MAX_UPLOAD_BODY = BULK_FILE_MAX_BYTES + 64 * 1024  # POST /bulk: the file and its form
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _optional_flag("SESSION_COOKIE_SECURE")  # unset: on in production
    SESSION_IDLE_MINUTES = int(os.environ.get("SESSION_IDLE_MINUTES", "30"))
    SESSION_LIFETIME_HOURS = int(os.environ.get("SESSION_LIFETIME_HOURS", "12"))
    WTF_CSRF_TIME_LIMIT = None
    APPROVAL_EXPIRY_HOURS = float(os.environ.get("APPROVAL_EXPIRY_HOURS", "24"))
    LOGIN_MAX_FAILURES = int(os.environ.get("LOGIN_MAX_FAILURES", "5"))
    LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900"))
    LOGIN_MAX_FAILURES_PER_ADDRESS = int(os.environ.get("LOGIN_MAX_FAILURES_PER_ADDRESS", "50"))
    PROXY_FIX_X_FOR = int(os.environ.get("PROXY_FIX_X_FOR", "0"))  # proxies adding X-Forwarded-For
    WALLET_ENV = os.environ.get("WALLET_ENV", "development")
    DB_PING_IDLE_SECONDS = float(os.environ.get("DB_PING_IDLE_SECONDS", "5"))
    API_KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "5"))
    # Operations (wallet_web/resilience.py, observability.py): see docs/operations.md.
    SQLITE_SYNCHRONOUS = os.environ.get("SQLITE_SYNCHRONOUS", "FULL")
    LEDGER_POOL_SIZE = int(os.environ.get("LEDGER_POOL_SIZE", "8"))  # ledger_pool.py, per worker
    DB_CONNECT_TIMEOUT_SECONDS = int(os.environ.get("DB_CONNECT_TIMEOUT_SECONDS", "3"))
    DB_STATEMENT_TIMEOUT_MS = int(os.environ.get("DB_STATEMENT_TIMEOUT_MS", "10000"))
    DB_LOCK_TIMEOUT_MS = int(os.environ.get("DB_LOCK_TIMEOUT_MS", "3000"))
    DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = int(
        os.environ.get("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "60000"))
    # Read replica (wallet_web/replica.py, docs/scaling.md#read-replicas); unset: all on the
    # primary. The numbers stay text here: create_app converts them and names a bad one.
    DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL") or None
    REPLICA_MAX_LAG_SECONDS = os.environ.get("REPLICA_MAX_LAG_SECONDS", "5")
    REPLICA_WAIT_MS = os.environ.get("REPLICA_WAIT_MS", "200")
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN")  # when set, /metrics needs it as a bearer
    # Webhook deliveries (wallet_web/webhooks.py, docs/events.md); the lease outlasts a POST.
    WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
    WEBHOOK_RETRY_FOR_SECONDS = float(os.environ.get("WEBHOOK_RETRY_FOR_SECONDS", "86400"))
    WEBHOOK_BACKOFF_BASE_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_BASE_SECONDS", "10"))
    WEBHOOK_BACKOFF_CAP_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_CAP_SECONDS", "3600"))
    WEBHOOK_LEASE_SECONDS = float(os.environ.get("WEBHOOK_LEASE_SECONDS", "60"))
    WEBHOOK_BATCH = int(os.environ.get("WEBHOOK_BATCH", "50"))


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret-key"
    WALLET_ENV = "test"
    DATABASE_REPLICA_URL = None  # a test that wants one passes it
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
