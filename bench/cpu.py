"""CPU seconds used by each process group while a measurement runs (all share 2 cores)."""
from __future__ import annotations

import re
import resource
import threading
import time

import psutil


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _group_times(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = _cpu(psutil.Process(pid))
        except psutil.Error:
            pass
    return found


# A backend's title: "postgres: [cluster: ]user database host(port) state".
BACKEND = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) (?:\S+\(\d+\)|\[local\])")


def postgres_pids(database: str | None = None) -> list[int]:
    """The server's processes and the backends of `database` (all backends when None): the
    backends of other databases serve other sessions' tests on this shared box."""
    pids = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] not in ("postgres", "postmaster"):
            continue
        backend = BACKEND.match(" ".join(process.info["cmdline"] or []))
        if database is None or backend is None or backend.group(1) == database:
            pids.append(process.pid)
    return pids


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle, over all cores."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class CpuMeter:
    """CPU seconds of gunicorn (master and workers) and PostgreSQL (the server processes and the
    backends of `database`) from start to stop.

    Processes are sampled every SAMPLE_SECONDS, so a process that ends in between (a pgbench
    backend) keeps the CPU it was last seen with. `other` is what the rest of the machine used
    meanwhile: the load generator's own figure is passed to report()."""

    SAMPLE_SECONDS = 0.25

    def __init__(self, gunicorn_pid: int, database: str | None = None):
        self.gunicorn_pid, self.database = gunicorn_pid, database
        self.stopped = threading.Event()

    def _groups(self) -> dict[str, list[int]]:
        try:
            children = [c.pid for c in psutil.Process(self.gunicorn_pid).children(recursive=True)]
        except psutil.Error:
            children = []
        return {"gunicorn": [self.gunicorn_pid, *children], "postgres": postgres_pids(self.database)}

    def _sample(self) -> None:
        for name, pids in self._groups().items():
            self.last.setdefault(name, {}).update(_group_times(pids))

    def _sample_until_stopped(self) -> None:
        while not self.stopped.wait(self.SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> "CpuMeter":
        self.started_at, self.busy_at = time.perf_counter(), machine_busy()
        self.last: dict[str, dict[int, float]] = {}
        self._sample()
        self.start = {name: dict(times) for name, times in self.last.items()}
        self.sampler = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self.sampler.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopped.set()
        self.sampler.join()
        self._sample()
        self.wall = time.perf_counter() - self.started_at
        self.busy = machine_busy() - self.busy_at
        self.used = {name: sum(t - self.start[name].get(pid, 0.0) for pid, t in times.items())
                     for name, times in self.last.items()}

    def report(self, **extra_groups: float) -> dict:
        """Seconds per group, plus extra groups that measured themselves (the load generator)."""
        groups = {**self.used, **extra_groups}
        other = self.busy - sum(groups.values())
        figures = {name: round(s, 2) for name, s in groups.items()}
        return {**figures, "other": round(max(other, 0.0), 2), "machine_busy": round(self.busy, 2),
                "wall": round(self.wall, 2), "cores": psutil.cpu_count()}


def children_cpu() -> float:
    """CPU seconds of this process's finished children (pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
