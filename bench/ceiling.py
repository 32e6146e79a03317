"""The stack's ceiling as a second target (issue 16): the smallest Flask app doing a top-up's
database work (`../shared/bench/ceiling/app.py`, kept outside this repository), under the same
gunicorn.conf.py, on the same database, driven by the same load generator. The project's ok/s
divided by the ceiling's, at the same scenario and clients in one run, is the share of the
stack's throughput the project keeps."""
from __future__ import annotations

from pathlib import Path

from .common import ROOT, connect
from .server import Gunicorn

DEFAULT_DIR = ROOT.parent / "shared" / "bench" / "ceiling"
SCENARIOS = ("hot-treasury", "mixed")  # the routes it speaks: top-up, bonus, spend, balance
WALLETS = 2000  # it creates wallets 1..2000
FUNDS = 10**15  # so that the mixed scenario's spends are covered, as the project's users are


class Ceiling(Gunicorn):
    app = "ceiling.app:app"
    ready_path = "/wallet/1/balance"

    def __init__(self, url: str, directory: Path, key: str, use_config: bool = True):
        super().__init__(url, use_config=use_config,
                         env={"PYTHONPATH": str(directory.parent), "CEILING_KEY": key})

    def __enter__(self) -> "Ceiling":
        super().__enter__()
        with connect(self.url) as conn:  # its schema exists once a worker has answered
            conn.execute("UPDATE ceiling_wallet SET balance = %s", (FUNDS,))
        return self


def users_for(users: list[int]) -> list[int]:
    """The bench's users that the ceiling also has a wallet for."""
    return [user for user in users if user <= WALLETS]


def ratio(project: dict, ceiling: dict) -> float:
    return round(project["ok_per_s"] / max(ceiling["ok_per_s"], 1e-9), 2)
