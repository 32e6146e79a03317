"""Real concurrency for tests: calls released together on their own threads."""
import threading
from concurrent.futures import ThreadPoolExecutor

from wallet_web.extensions import db


def run_at_once(app, calls: list) -> list:
    """Every call on its own thread with its own app context, released together by a
    barrier: their results, or the exceptions they raised."""
    barrier = threading.Barrier(len(calls), timeout=60)

    def run(call):
        with app.app_context():
            barrier.wait()
            try:
                return call()
            except Exception as error:  # collected and asserted on by the test
                return error
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
