"""Waiting for what the feed's read rule lets a reader see (events.py): transaction ids are
cluster-wide, so a writer in another database of the shared PostgreSQL (another test worker)
may hold the visibility bound back for a moment. Only a hang reaches the deadline."""
import time

HANG_GUARD_SECONDS = 30


def until_some(job, timeout: float = HANG_GUARD_SECONDS) -> int:
    """job() until it reports some work done; that count."""
    deadline = time.monotonic() + timeout
    while (done := job()) == 0:
        assert time.monotonic() < deadline, f"{job} found nothing to do for {timeout} s"
        time.sleep(0.05)
    return done


def until_none_left(job, left, timeout: float = HANG_GUARD_SECONDS) -> int:
    """job() until left() is 0; the work done in all."""
    deadline, done = time.monotonic() + timeout, 0
    while True:
        done += job()
        if not left():
            return done
        assert time.monotonic() < deadline, f"{left()} left after {timeout} s"
        time.sleep(0.05)
