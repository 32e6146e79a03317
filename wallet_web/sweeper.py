"""The sweeper: releases expired holds, expires approval requests and bulk grants past their
time, finishes requests a crash cut off, resumes bulk grants whose poster died, rolls up the
overview's daily volumes and seals the hash chains. `flask --app wsgi sweep` runs it once; `--every 60` keeps running it
(the compose service `sweeper`). Every job is idempotent and safe beside another sweeper and
beside the requests themselves, so a killed sweeper loses nothing: the next pass does it.
A pass that fails (the database restarting) is logged and tried again at the next tick.
"""
from __future__ import annotations

import logging
import time

import click
from flask.cli import with_appcontext

from . import approvals, bulk, chain, holds, rollups
from .workers import stop_on_signals, through_outages

log = logging.getLogger("wallet_web.sweeper")
JOBS = (
    ("holds_released", holds.expire_due),
    ("requests_expired", approvals.expire_due),
    ("requests_settled", approvals.settle_stuck),
    ("bulk_grants_expired", bulk.expire_due),
    ("bulk_grants_resumed", bulk.resume_stale),
    ("volumes_rolled", rollups.roll_count),  # the overview's daily volumes
    ("entries_sealed", chain.seal_count),  # last: it seals what the jobs above committed
)


def sweep_once() -> dict[str, int]:
    return {name: job() for name, job in JOBS}


@click.command("sweep")
@click.option("--every", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between passes; without it, one pass and exit.")
@with_appcontext
def sweep_command(every: float | None) -> None:
    """Release expired holds and expire or finish approval requests."""
    if every is None:
        click.echo(" ".join(f"{name}={count}" for name, count in sweep_once().items()))
        return
    stopping = stop_on_signals()
    log.info("sweeper started", extra={"fields": {"every_seconds": every}})
    while not stopping.is_set():
        started = time.monotonic()
        _pass()
        stopping.wait(max(every - (time.monotonic() - started), 0))
    log.info("sweeper stopped")


def _pass() -> None:
    done = through_outages(sweep_once, log, "sweep failed")
    if done and any(done.values()):
        log.info("swept", extra={"fields": done})
