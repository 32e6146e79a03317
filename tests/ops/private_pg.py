"""A throwaway PostgreSQL cluster of one test (initdb + pg_ctl on a free port), so a test can
stop and start a database without touching the shared one."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.ops.support import free_port

def _newest_server_bin() -> Path:
    """Debian keeps each major version's server binaries apart; take the newest installed."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                       key=lambda path: int(path.parent.parent.name))
    return installed[-1].parent if installed else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _newest_server_bin()
POSTGRES_USER = "postgres"


def _as_postgres() -> list[str]:
    """initdb refuses to run as root: run the cluster as the postgres system user then."""
    return ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []


class PrivateCluster:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="ops-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, POSTGRES_USER)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, timeout: float = 60) -> None:
        subprocess.run([*_as_postgres(), *command], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> "PrivateCluster":
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        return self.start()

    def start(self) -> "PrivateCluster":
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c shared_buffers=16MB -c max_connections=40")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
