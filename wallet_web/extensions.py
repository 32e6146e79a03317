"""Extensions, created unbound and bound to the app in create_app."""
import sqlite3
import threading
import time

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()

# Execution option the ledger sets on its connection: on SQLite the transaction then
# starts with BEGIN IMMEDIATE, taking the write lock before any balance is read.
WRITE_LOCK = "ledger_write_lock"
WRITER = "holds_sqlite_writer"  # pool record info: this connection holds the process's turn
SQLITE_BUSY_TIMEOUT_MS = 10_000


def configure_engine(engine: Engine, config) -> None:
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, config["SQLITE_SYNCHRONOUS"])
    else:
        _ping_idle_connections(engine, config["DB_PING_IDLE_SECONDS"])


def _ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling for connections that sat idle in the pool.

    A busy connection is not pinged: that round trip would cost ~10% of the throughput. If the
    database went away under load, the first statement fails with a disconnect error, which
    invalidates the whole pool, so every later checkout reconnects.
    """

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(str(error)) from error  # the pool replaces it


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    """SQLite has one writer at a time. Threads of this process that write take turns on a
    lock of this process before BEGIN IMMEDIATE, held until the connection goes back to the
    pool (after its COMMIT): they queue instead of polling the file lock, whose busy handler
    sleeps up to 100 ms between tries. Other processes still meet at the file lock (gunicorn
    runs one process on SQLite: gunicorn.conf.py)."""
    writer = threading.Lock()

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        write = conn.get_execution_options().get(WRITE_LOCK, False)
        record = conn.connection.info
        if write and not record.get(WRITER):
            if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise exc.OperationalError("BEGIN IMMEDIATE", None, _locked())
            record[WRITER] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection, record):
        if record.info.pop(WRITER, False):
            writer.release()


def _locked() -> sqlite3.OperationalError:
    """The error SQLite gives when its busy timeout runs out (a retryable 503: resilience.py)."""
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return error
