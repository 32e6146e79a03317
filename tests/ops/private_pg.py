"""A throwaway PostgreSQL cluster of one test (initdb + pg_ctl on a free port), so a test can
stop and start a database without touching the shared one; and a streaming standby of it
(pg_basebackup -R), since the shared server allows no replication connections."""
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


REPLICATION_LINE = "host replication all 127.0.0.1/32 trust"


class PrivateCluster:
    def __init__(self, **settings: str):
        """settings: extra server settings (`-c name=value`), e.g. log_statement="all"."""
        self.root = Path(tempfile.mkdtemp(prefix="ops-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = settings
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
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "start")
        return self

    def allow_replication(self) -> "PrivateCluster":
        """A replication line for 127.0.0.1 in pg_hba.conf (initdb's trust default has one
        already; this does not count on it), read at once. wal_level is `replica` by default."""
        hba = self.data / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        if REPLICATION_LINE not in (" ".join(line.split()) for line in lines):
            hba.write_text("\n".join([*lines, REPLICATION_LINE, ""]))
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "reload")
        return self

    def standby(self, **settings: str) -> "PrivateCluster":
        """A new cluster streaming from this one (pg_basebackup -R), started on its own port;
        `pg_ctl -w` returns once it accepts read-only connections."""
        standby = PrivateCluster(**settings)
        self._run(str(PG_BIN / "pg_basebackup"), "-D", str(standby.data), "-h", "127.0.0.1",
                  "-p", str(self.port), "-U", "postgres", "-R", "-X", "stream",
                  "--checkpoint=fast", "--no-sync", timeout=120)
        return standby.start()

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
