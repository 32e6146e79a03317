"""Wallet service: application factory."""
import os

from flask import Flask

from .config import Config
from .extensions import configure_engine, csrf, db, login_manager, migrate

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
ROOT_DIR = os.path.dirname(MIGRATIONS_DIR)


def create_app(config: type | dict | None = None) -> Flask:
    app = Flask(
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
    _require_secret_key(app)
    _init_extensions(app)
    _register_blueprints(app)
    _register_operations(app)
    return app


def _default_database(app: Flask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "wallet.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"


def _require_secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    if app.config["WALLET_ENV"] == "production":
        raise RuntimeError("SECRET_KEY must be set when WALLET_ENV=production")
    app.config["SECRET_KEY"] = "dev-only-insecure-key"


def _init_extensions(app: Flask) -> None:
    from . import models  # noqa: F401  (registers the tables on db.metadata)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config["DB_PING_IDLE_SECONDS"])


def _register_blueprints(app: Flask) -> None:
    from . import api, cli, web

    cli.register(app)
    api.register(app)
    web.register(app)


def _register_operations(app: Flask) -> None:
    from . import health, observability, resilience

    for module in (health, observability, resilience):
        module.init_app(app)
