"""Wallet service: application factory."""
import os

from flask import Flask
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import SQLITE_SYNCHRONOUS, WALLET_ENVS, Config
from . import ledger_pool, replica
from .extensions import configure_engine, csrf, db, login_manager, migrate

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
ROOT_DIR = os.path.dirname(MIGRATIONS_DIR)
MIN_SECRET_KEY_BYTES = 32


class WalletFlask(Flask):
    """Flask, with ensure_sync's answer kept per function: Flask asks it of every view and
    hook on every request (inspect.iscoroutinefunction, ten calls a request)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.synced: dict = {}

    def ensure_sync(self, func):
        synced = self.synced.get(func)
        if synced is None:
            synced = self.synced[func] = super().ensure_sync(func)
        return synced


def create_app(config: type | dict | None = None) -> Flask:
    app = WalletFlask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(ROOT_DIR, "templates"),
        static_folder=os.path.join(ROOT_DIR, "static"),
    )
    app.config.from_object(Config)
    if isinstance(config, dict):
        app.config.update(config)
    elif config is not None:
        app.config.from_object(config)
    _default_database(app)
    _check_environment(app)
    _check_sqlite_synchronous(app)
    _check_replica(app)
    _require_secret_key(app)
    _default_cookie_security(app)
    _trust_proxies(app)
    _init_extensions(app)
    _register_blueprints(app)
    _register_operations(app)
    return app


def _default_database(app: Flask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "wallet.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"


def _check_environment(app: Flask) -> None:
    name = app.config["WALLET_ENV"]
    if name not in WALLET_ENVS:  # a typo must not fall back to development's insecure defaults
        raise RuntimeError(f"WALLET_ENV must be {', '.join(WALLET_ENVS[:-1])} or "
                           f"{WALLET_ENVS[-1]}, not {name!r}")


def _check_sqlite_synchronous(app: Flask) -> None:
    value = app.config["SQLITE_SYNCHRONOUS"] = app.config["SQLITE_SYNCHRONOUS"].upper()
    if value not in SQLITE_SYNCHRONOUS:
        raise RuntimeError(f"SQLITE_SYNCHRONOUS must be {' or '.join(SQLITE_SYNCHRONOUS)}, "
                           f"not {value!r}")


def _check_replica(app: Flask) -> None:
    """The replica's two numbers converted here; its URL (never echoed: it may hold a password)
    needs a PostgreSQL primary and the primary's driver."""
    config = app.config
    config["REPLICA_MAX_LAG_SECONDS"] = _setting(config, "REPLICA_MAX_LAG_SECONDS", float,
                                                 lambda value: value > 0, "seconds above 0")
    config["REPLICA_WAIT_MS"] = _setting(config, "REPLICA_WAIT_MS", int,
                                         lambda value: value >= 0, "whole milliseconds, 0 or more")
    config["DATABASE_REPLICA_URL"] = config.get("DATABASE_REPLICA_URL") or None
    if config["DATABASE_REPLICA_URL"]:
        primary = make_url(config["SQLALCHEMY_DATABASE_URI"])
        _check_replica_url(config["DATABASE_REPLICA_URL"], primary)


def _check_replica_url(url: str, primary: URL) -> None:
    if primary.get_backend_name() != "postgresql":
        raise RuntimeError("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL: a replica of "
                           f"{primary.get_backend_name()} cannot be read")
    try:
        driver = make_url(url).drivername
    except ArgumentError:
        raise RuntimeError("DATABASE_REPLICA_URL is not a database URL; write it as "
                           "DATABASE_URL is written (postgresql+psycopg://...)") from None
    if driver != primary.drivername:
        raise RuntimeError(f"DATABASE_REPLICA_URL must be a {primary.drivername}:// URL, as "
                           f"DATABASE_URL is, not {driver}://")


def _setting(config, name: str, kind: type, valid, meaning: str):
    try:
        value = kind(config[name])
    except (TypeError, ValueError):
        value = None
    if value is None or not valid(value):
        raise RuntimeError(f"{name} must be {meaning}, not {config[name]!r}")
    return value


def _require_secret_key(app: Flask) -> None:
    key = app.config.get("SECRET_KEY") or ""
    size = len(key.encode() if isinstance(key, str) else key)
    if app.config["WALLET_ENV"] == "production" and size < MIN_SECRET_KEY_BYTES:
        raise RuntimeError(
            f"SECRET_KEY must be set to at least {MIN_SECRET_KEY_BYTES} bytes when "
            "WALLET_ENV=production; make one with: "
            "python3 -c 'import secrets; print(secrets.token_hex(32))'")
    if not key:
        app.config["SECRET_KEY"] = "dev-only-insecure-key"


def _default_cookie_security(app: Flask) -> None:
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        app.config["SESSION_COOKIE_SECURE"] = app.config["WALLET_ENV"] == "production"


def _trust_proxies(app: Flask) -> None:
    """Behind PROXY_FIX_X_FOR proxies the client address comes from X-Forwarded-For; without
    the setting that header is ignored, since any client can send it."""
    if app.config["PROXY_FIX_X_FOR"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])


def _init_extensions(app: Flask) -> None:
    from . import models  # noqa: F401  (registers the tables on db.metadata)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config)
        ledger_pool.init_app(app, db.engine)
        replica.init_app(app, db.engine)


def _register_blueprints(app: Flask) -> None:
    from . import api, cli, inputs, web

    inputs.init_app(app)  # the `id` route converter (before any route uses it), the body limit
    cli.register(app)
    api.register(app)
    web.register(app)


def _register_operations(app: Flask) -> None:
    from . import health, observability, resilience

    for module in (health, observability, resilience):
        module.init_app(app)
