"""Paths, database URLs and subprocess helpers shared by the bench modules."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench"


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL without its driver, for psycopg, psql and pgbench."""
    return url.replace("+psycopg", "")


def database_name(url: str) -> str:
    return make_url(url).database


def connect(url: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=autocommit)


def app_env(url: str, **extra: str) -> dict[str, str]:
    """Environment for flask, seed.py and gunicorn: production settings on the bench database."""
    env = {**os.environ, "DATABASE_URL": url, "WALLET_ENV": "production",
           "SECRET_KEY": os.urandom(32).hex(), "PYTHONPATH": str(ROOT),
           "SESSION_COOKIE_SECURE": "0"}  # the bench's dashboard client speaks plain HTTP
    env.pop("TEST_DATABASE_URL", None)
    env.update(extra)
    return env


def run_app_command(url: str, *args: str, stdin: str | None = None) -> str:
    """Runs a command of the project (flask, seed.py) and returns its stdout; raises on failure."""
    done = subprocess.run(args, cwd=ROOT, env=app_env(url), input=stdin, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def flask(url: str, *args: str, stdin: str | None = None) -> str:
    return run_app_command(url, str(BIN / "flask"), "--app", "wsgi", *args, stdin=stdin)
