"""Issue 16's measuring tools, cheaply: a py-spy stack is charged to the layer of its innermost
frame, and the report and the targets read the ceiling app's levels beside the project's."""
from bench import profile, report, targets


def test_a_sample_is_charged_to_the_layer_of_its_innermost_frame():
    collapsed = "\n".join([
        "run (gunicorn/workers/gthread.py:1);_post_direct (wallet_web/ledger.py:3) 7",
        "run (gunicorn/workers/gthread.py:1);execute (psycopg/cursor.py:2) 5",
        "run (gunicorn/workers/gthread.py:1);observe (prometheus_client/metrics.py:9) 2",
        "run (gunicorn/workers/gthread.py:1) 4",
        "not a sample line",
    ])
    assert profile.charge(collapsed) == {"app: ledger service": 7, "psycopg (driver, pool)": 5,
                                         "app: logs, metrics, request ids": 2,
                                         "gunicorn (HTTP parsing, workers)": 4}


def level(ok_per_s: float, p99: float, errors: int = 0) -> dict:
    return {"ok_per_s": ok_per_s, "latency_ms": {"p99": p99}, "errors": errors,
            "conservation": {"ok": True}, "cpu_ms_per_request": {"gunicorn": 1.0}}


def results(project: float, ceiling: float, p99: float) -> dict:
    return {"scenarios": {"hot-treasury": {"64": level(project, p99)}},
            "ceiling": {"hot-treasury": {"64": level(ceiling, 50)}},
            "ceiling_ratio": {"hot-treasury": {"64": round(project / ceiling, 2)}},
            "ceiling_users": 1000}


def test_the_ceiling_target_needs_three_quarters_of_its_throughput_and_a_p99_of_120_ms():
    assert targets.ceiling_target(results(1500, 2000, 110), "hot-treasury")["result"] == "pass"
    assert targets.ceiling_target(results(1400, 2000, 110), "hot-treasury")["result"] == "FAIL"
    assert targets.ceiling_target(results(1500, 2000, 130), "hot-treasury")["result"] == "FAIL"
    assert targets.ceiling_target(results(1500, 2000, 110), "mixed")["result"] == "n/a"


def test_the_report_shows_each_ceiling_level_beside_the_project():
    table = report._ceiling(results(1500, 2000, 110))
    assert "| hot-treasury | 64 | 1,500 | 2,000 | **0.75** | 110 | 50 | 0 | 1.0 / 1.0 |" in table
    assert report._ceiling({}) == "Ceiling app: not run."
