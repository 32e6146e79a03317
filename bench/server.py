"""The app under gunicorn, on the bench database, as production runs it."""
from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from .common import BIN, ROOT, app_env

CONFIG = ROOT / "gunicorn.conf.py"
FALLBACK = ["-k", "gthread", "-w", "2", "--threads", "8"]
READY_PATH = "/api/v1/openapi.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """Starts gunicorn with the project's gunicorn.conf.py, or a fallback when there is none."""

    app = "wsgi:app"
    ready_path = READY_PATH

    def __init__(self, url: str, port: int | None = None, use_config: bool = True,
                 env: dict[str, str] | None = None):
        self.url, self.port = url, port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = app_env(self.url, **(env or {}))
        self.log_path = Path(tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")[1])
        # gunicorn reads ./gunicorn.conf.py by itself: -c /dev/null keeps it out for the fallback.
        options = ["-c", str(CONFIG)] if use_config and CONFIG.exists() else ["-c", "/dev/null", *FALLBACK]
        self.command = [str(BIN / "gunicorn"), self.app, *options, "-b", f"127.0.0.1:{self.port}"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        with open(self.log_path, "wb") as log:  # a file, so a chatty server never blocks
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                            stdout=subprocess.DEVNULL, stderr=log)
        self._wait_until_up()
        return self

    def __exit__(self, *_exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.pid).children(recursive=True)]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_until_up(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.base + self.ready_path, timeout=2).read()
                return
            except OSError:  # refused, reset or timed out while the workers boot
                time.sleep(0.2)
        raise TimeoutError(f"gunicorn did not answer in {seconds}s:\n{self.log_tail()}")
