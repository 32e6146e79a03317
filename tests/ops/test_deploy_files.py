"""Static checks of what deploys the service (no Docker engine runs here): the compose file
parsed, the Dockerfile linted by hadolint and held to its key properties, the gunicorn
defaults, and every setting documented."""
import json
import re
import runpy
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.support import BIN
from wallet_web import ROOT_DIR

ROOT = Path(ROOT_DIR)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_compose_runs_postgres_16_with_a_healthcheck_and_a_named_volume(compose):
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:16\.\d+(-\w+)?", db["image"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume, _, mount = db["volumes"][0].partition(":")
    assert mount == "/var/lib/postgresql/data" and volume in compose["volumes"]


def test_compose_starts_the_app_after_a_healthy_database_with_secrets_from_env(compose):
    app = compose["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["env_file"] == ".env"
    assert "ports" not in app, "only the load balancer is published"
    assert "@db:5432/" in app["environment"]["DATABASE_URL"]
    assert app["environment"]["WALLET_ENV"] == "production"
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    password = compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD")


def test_every_compose_variable_is_in_env_example(compose):
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    with_default = set(re.findall(r"\$\{([A-Z_]+):-", text))
    assert used - with_default <= defined
    assert {"APP_PORT", "APP_REPLICAS", "PROXY_FIX_X_FOR"} <= with_default
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_pins_its_bases_runs_as_non_root_and_downloads_no_scripts(dockerfile):
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(bases) == 2 and bases[0].startswith("node:") and bases[1].startswith("python:3.11")
    assert all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), "versions, not latest"
    final_stage = dockerfile.split("FROM ")[-1]
    user = re.findall(r"^USER (\S+)", final_stage, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert not re.search(r"(curl|wget)[^\n]*\|\s*(ba)?sh", dockerfile)
    assert "npm ci" in dockerfile and "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "COPY --from=assets /build/vendor static/vendor" in dockerfile
    assert 'ENTRYPOINT ["bin/entrypoint"]' in dockerfile


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", "node_modules"} <= set(ignored)


def test_runtime_requirements_are_pinned():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text()
             .splitlines()]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in lines if line)


def test_the_entrypoint_is_executable_passes_shellcheck_and_execs_gunicorn():
    script = ROOT / "bin" / "entrypoint"
    assert script.stat().st_mode & 0o111
    result = subprocess.run([str(BIN / "shellcheck"), str(script)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert script.read_text().rstrip().endswith("exec gunicorn wsgi:app -c gunicorn.conf.py")


def load_gunicorn_conf(monkeypatch, **env) -> dict:
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "PORT",
                 "GUNICORN_BIND", "GUNICORN_TIMEOUT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/ops-conf-check")
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize(("env", "workers"), [
    ({}, 1),  # no DATABASE_URL: the SQLite default
    ({"DATABASE_URL": "sqlite:////srv/wallet.sqlite3"}, 1),
    ({"DATABASE_URL": "sqlite:////srv/wallet.sqlite3", "GUNICORN_WORKERS": "3"}, 3),
])
def test_gunicorn_runs_one_process_on_sqlite(monkeypatch, env, workers):
    """Its threads then queue for SQLite's one writer on a lock of the process."""
    assert load_gunicorn_conf(monkeypatch, **env)["workers"] == workers


def test_gunicorn_defaults_suit_a_two_core_box(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch, DATABASE_URL="postgresql+psycopg://wallet@db/wallet")
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 2, 8)
    assert conf["bind"] == "0.0.0.0:8000"
    assert conf["graceful_timeout"] >= 10 and conf["timeout"] >= 10 and conf["keepalive"] > 0
    assert callable(conf["child_exit"]) and callable(conf["on_starting"])
    # The app logs requests; with an access log or a logconfig_dict gunicorn would build its
    # access-log atoms on every request as well.
    assert conf["accesslog"] is None and "logconfig_dict" not in conf


def test_gunicorn_settings_come_from_the_environment(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch, GUNICORN_WORKERS="3", GUNICORN_THREADS="4",
                              GUNICORN_WORKER_CLASS="sync", PORT="9000")
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("sync", 3, 4)
    assert conf["bind"] == "0.0.0.0:9000"


def test_every_setting_read_from_the_environment_is_documented():
    sources = [ROOT / "wallet_web" / "config.py", ROOT / "gunicorn.conf.py"]
    names = {name for path in sources
             for name in re.findall(r"""environ\.get\(\s*["']([A-Z_]+)""", path.read_text())}
    names |= set(re.findall(r"_env_int\(\"([A-Z_]+)\"", (ROOT / "gunicorn.conf.py").read_text()))
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert names and not {name for name in names if f"`{name}`" not in docs}


def test_compose_gives_gunicorn_longer_than_its_graceful_timeout_to_stop(compose):
    app = compose["services"]["app"]
    assert app["stop_grace_period"] == "40s"
    graceful = load_gunicorn_conf_defaults()["graceful_timeout"]
    assert int(app["stop_grace_period"].removesuffix("s")) > graceful


def load_gunicorn_conf_defaults() -> dict:
    """gunicorn.conf.py's values in a process without GUNICORN_* variables."""
    code = ("import json, runpy, shutil; c = runpy.run_path('gunicorn.conf.py'); "
            "print(json.dumps({'graceful_timeout': c['graceful_timeout'], "
            "'timeout': c['timeout']}))")
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": "/tmp/ops-conf-check"}
    result = subprocess.run([str(BIN / "python"), "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def test_the_image_runs_as_uid_10001_and_its_code_belongs_to_root(dockerfile):
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"useradd\b[^\n]*--uid 10001\b", runtime)
    [user] = re.findall(r"^USER (\S+)$", runtime, re.M)
    assert user in ("10001", "10001:10001")
    # Nothing handed to the service user: no --chown on a COPY, no chown or chmod of the code.
    assert "--chown" not in runtime and not re.search(r"\bch(own|mod)\b", runtime)
    assert runtime.index("COPY wallet_web") < runtime.index("USER "), "copied as root"


def test_the_app_container_has_a_read_only_root_and_tmp_as_tmpfs(compose):
    app = compose["services"]["app"]
    assert app["read_only"] is True
    assert "/tmp" in [mount.split(":")[0] for mount in app["tmpfs"]]


def test_the_sweeper_service_runs_the_command_the_ops_tests_run_and_restarts(compose):
    from tests.ops.test_sweeper import COMMAND

    sweeper = compose["services"]["sweeper"]
    command = sweeper["entrypoint"]
    assert command[:5] == ["flask", "--app", "wsgi", "sweep", "--every"]
    assert command[3:5] == COMMAND[:2]  # the same command, outside Docker
    assert sweeper["restart"] == "unless-stopped"
    assert sweeper["image"] == compose["services"]["app"]["image"]
    assert sweeper["depends_on"]["app"]["condition"] == "service_healthy"  # migrated first
    assert sweeper["read_only"] is True
    assert sweeper["environment"]["DATABASE_URL"] == compose["services"]["app"]["environment"][
        "DATABASE_URL"]


def test_the_deliverer_service_runs_the_command_the_ops_tests_run_and_restarts(compose):
    from tests.ops.test_webhook_delivery import COMMAND

    deliverer = compose["services"]["deliverer"]
    assert deliverer["entrypoint"] == ["flask", "--app", "wsgi", "events", "deliver"]
    assert deliverer["entrypoint"][3:] == COMMAND[:2]  # the same command, outside Docker
    assert deliverer["restart"] == "unless-stopped"
    assert deliverer["image"] == compose["services"]["app"]["image"]
    assert deliverer["depends_on"]["app"]["condition"] == "service_healthy"  # migrated first
    assert deliverer["read_only"] is True
    assert deliverer["environment"] == compose["services"]["sweeper"]["environment"]
    # SIGTERM waits for the sends in flight: give it longer than a send may take.
    from wallet_web.config import Config
    assert int(deliverer["stop_grace_period"].removesuffix("s")) > Config.WEBHOOK_TIMEOUT_SECONDS


# ---------------------------------------------------------------- several instances (docs/scaling.md)


@pytest.fixture(scope="module")
def haproxy_cfg() -> str:
    return (ROOT / "deploy" / "haproxy.cfg").read_text()


def test_compose_runs_several_app_instances_behind_a_pinned_haproxy(compose):
    app, lb = compose["services"]["app"], compose["services"]["lb"]
    replicas = re.fullmatch(r"\$\{APP_REPLICAS:-(\d+)\}", app["deploy"]["replicas"]).group(1)
    assert int(replicas) >= 2
    assert app["expose"] == ["8000"]
    assert re.fullmatch(r"haproxy:\d+\.\d+\.\d+(-\w+)?", lb["image"]), "the official image, pinned"
    assert lb["volumes"] == ["./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert lb["ports"] == ["${APP_PORT:-8000}:8000"]
    assert lb["read_only"] is True and lb["restart"] == "unless-stopped"
    # The login throttle counts per client address: the one HAProxy appends, not its own.
    assert app["environment"]["PROXY_FIX_X_FOR"] == "${PROXY_FIX_X_FOR:-1}"


def test_haproxy_accepts_the_config():
    from tests.ops.test_load_balancer import HAPROXY

    result = subprocess.run([HAPROXY, "-c", "-f", "deploy/haproxy.cfg"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_balancer_checks_readyz_on_the_app_service_and_passes_the_client_address(
        compose, haproxy_cfg):
    app = compose["services"]["app"]
    ready = haproxy_cfg.split("\nbackend ready\n", 1)[1].split("\nbackend ", 1)[0]
    assert "option httpchk GET /readyz" in ready
    assert "/readyz" in " ".join(app["healthcheck"]["test"]), "the same probe as compose's"
    templates = re.findall(r"server-template \S+ \S+ (\w+):(\d+) check", haproxy_cfg)
    assert templates and set(templates) == {("app", app["expose"][0])}
    assert re.search(r"^\s*bind :(\d+)$", haproxy_cfg, re.M).group(1) == "8000"
    assert re.search(r"^\s*option forwardfor$", haproxy_cfg, re.M)
    assert re.search(r"^\s*use_backend ready if \{ nbsrv\(ready\) gt 0 \}$", haproxy_cfg, re.M)


def test_haproxy_waits_for_a_request_longer_than_gunicorn_lets_it_run(haproxy_cfg):
    server_timeout = re.search(r"^\s*timeout server (\d+)s", haproxy_cfg, re.M).group(1)
    assert int(server_timeout) > load_gunicorn_conf_defaults()["timeout"]


def test_the_migrate_service_runs_the_entrypoints_steps_once_before_the_instances(compose):
    migrate = compose["services"]["migrate"]
    steps = migrate["entrypoint"][-1]
    entrypoint = (ROOT / "bin" / "entrypoint").read_text()
    assert migrate["entrypoint"][:2] == ["sh", "-c"]
    assert steps == "flask --app wsgi db upgrade && python seed.py"
    assert all(step in entrypoint for step in steps.split(" && "))
    assert migrate["image"] == compose["services"]["app"]["image"]
    assert migrate["restart"] == "on-failure" and migrate["read_only"] is True
    assert migrate["environment"] == compose["services"]["sweeper"]["environment"]
