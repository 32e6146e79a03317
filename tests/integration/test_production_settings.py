"""What WALLET_ENV demands and changes, in fresh processes: settings are read from the
environment when the app starts."""
import sqlite3
import sys

import pytest

from tests.integration.test_migrations_and_seed import run

STRONG_KEY = "0123456789abcdef" * 4
SHOW_COOKIE_SECURITY = "import wsgi; print(wsgi.app.config['SESSION_COOKIE_SECURE'])"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'wallet.sqlite3'}"


def start(url: str, code: str = "import wsgi", **env: str):
    return run([sys.executable, "-c", code], url, **env)


@pytest.mark.parametrize("wallet_env", ["prod", "Production", "staging", " production", ""])
def test_an_unknown_wallet_env_refuses_to_start(sqlite_url, wallet_env):
    result = start(sqlite_url, WALLET_ENV=wallet_env, SECRET_KEY=STRONG_KEY)
    assert result.returncode != 0
    assert "WALLET_ENV must be development, test or production" in result.stderr


@pytest.mark.parametrize("wallet_env", ["development", "test", "production"])
def test_the_known_wallet_envs_start(sqlite_url, wallet_env):
    assert start(sqlite_url, WALLET_ENV=wallet_env, SECRET_KEY=STRONG_KEY).returncode == 0


def test_production_refuses_a_secret_key_shorter_than_32_bytes(sqlite_url):
    result = start(sqlite_url, WALLET_ENV="production", SECRET_KEY=STRONG_KEY[:31])
    assert result.returncode != 0
    assert "SECRET_KEY must be set to at least 32 bytes" in result.stderr


@pytest.mark.parametrize("wallet_env, setting, secure", [
    ("production", "", "True"),
    ("production", "0", "False"),
    ("production", "1", "True"),
    ("development", "", "False"),
    ("development", "1", "True"),
])
def test_session_cookies_are_secure_by_default_in_production_only(sqlite_url, wallet_env,
                                                                  setting, secure):
    result = start(sqlite_url, SHOW_COOKIE_SECURITY, WALLET_ENV=wallet_env,
                   SECRET_KEY=STRONG_KEY, SESSION_COOKIE_SECURE=setting)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == secure


def test_seeding_in_production_creates_no_demo_users_keys_or_operators(tmp_path):
    path = tmp_path / "production.sqlite3"
    url, env = f"sqlite:///{path}", {"WALLET_ENV": "production", "SECRET_KEY": STRONG_KEY}
    assert run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], url,
               **env).returncode == 0
    seeded = run([sys.executable, "seed.py"], url, **env)
    assert seeded.returncode == 0, seeded.stderr
    assert "wk_" not in seeded.stdout and "alice" not in seeded.stdout
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("system",)]
        assert conn.execute("SELECT count(*) FROM operators").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM transactions WHERE kind = 'genesis'"
                            ).fetchone() == (3,)
