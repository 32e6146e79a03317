"""The issue's targets, checked against one run's results: pass, fail, or n/a (not measured)."""
from __future__ import annotations

P99_MS, READ_P95_MS = 150, 25
CEILING_SHARE, CEILING_P99_MS = 0.75, 120
DASHBOARD_P95_MS = 50  # issue 15: every page, with 1M postings and 100k users  # issue 16: of the ceiling app's ok/s, same run
CSV_ROWS_PER_S, CSV_RSS_MB = 50_000, 50
NO_CONVOY_TOLERANCE = 0.95  # throughput at 64 clients >= 95% of that at 8 (noise on a shared box)


def _level(results: dict, scenario: str, clients: int) -> dict | None:
    return results.get("scenarios", {}).get(scenario, {}).get(str(clients))


def _verdict(passed: bool | None, measured: str) -> dict:
    return {"result": "n/a" if passed is None else ("pass" if passed else "FAIL"), "measured": measured}


def write_target(results: dict, scenario: str, min_ok_per_s: int, check_p99: bool) -> dict:
    level = _level(results, scenario, 64)
    if level is None:
        return _verdict(None, "not run at 64 clients")
    p99 = level["latency_ms"].get("p99", float("inf"))
    passed = (level["ok_per_s"] >= min_ok_per_s and (not check_p99 or p99 <= P99_MS)
              and level["errors"] == 0 and level["conservation"]["ok"])
    return _verdict(passed, f"{level['ok_per_s']:,.0f} ok/s, p99 {p99} ms, "
                            f"{level['errors']} errors, conservation {level['conservation']['ok']}")


def convoy_target(results: dict) -> dict:
    parts, passed = [], True
    for scenario in results.get("scenarios", {}):
        low, high = _level(results, scenario, 8), _level(results, scenario, 64)
        if low is None or high is None:
            return _verdict(None, "needs 8 and 64 clients")
        ratio = high["ok_per_s"] / max(low["ok_per_s"], 1e-9)
        passed &= ratio >= NO_CONVOY_TOLERANCE
        parts.append(f"{scenario} {ratio:.2f}x")
    return _verdict(passed if parts else None, ", ".join(parts) or "no scenario run")


def ceiling_target(results: dict, scenario: str) -> dict:
    ratio = results.get("ceiling_ratio", {}).get(scenario, {}).get("64")
    if ratio is None:
        return _verdict(None, "ceiling not run at 64 clients")
    level = _level(results, scenario, 64)
    p99 = level["latency_ms"].get("p99", float("inf"))
    passed = (ratio >= CEILING_SHARE and p99 <= CEILING_P99_MS and level["errors"] == 0
              and level["conservation"]["ok"])
    return _verdict(passed, f"{ratio}x the ceiling's ok/s, p99 {p99} ms, {level['errors']} errors")


def read_target(results: dict, name: str) -> dict:
    figures = _read_figures(results.get("read_side", {})).get(name)
    if figures is None:
        return _verdict(None, "not measured")
    all_ok = set(figures["statuses"]) == {"200"}
    return _verdict(figures["p95_ms"] <= READ_P95_MS and all_ok,
                    f"p95 {figures['p95_ms']} ms over {figures['samples']}, statuses {figures['statuses']}")


def _read_figures(read_side: dict) -> dict:
    dashboard = read_side.get("dashboard", {})
    return {**{k: v for k, v in read_side.items() if isinstance(v, dict) and "p95_ms" in v},
            **{k: v for k, v in dashboard.items() if isinstance(v, dict)}}


def dashboard_target(results: dict) -> dict:
    """Issue 15: every dashboard page's p95 within DASHBOARD_P95_MS."""
    pages = results.get("read_side", {}).get("dashboard", {})
    figures = {name: f for name, f in pages.items() if isinstance(f, dict) and "p95_ms" in f}
    if not figures:
        return _verdict(None, "not measured")
    slow = {name: f["p95_ms"] for name, f in figures.items()
            if f["p95_ms"] > DASHBOARD_P95_MS or set(f["statuses"]) != {"200"}}
    worst = max(figures, key=lambda name: figures[name]["p95_ms"])
    return _verdict(not slow, f"{len(figures)} pages, slowest {worst} p95 "
                              f"{figures[worst]['p95_ms']} ms" + (f"; over: {slow}" if slow else ""))


def csv_target(results: dict) -> dict:
    export = results.get("read_side", {}).get("csv_export")
    if export is None:
        return _verdict(None, "not measured")
    passed = (export["status"] == 200 and export["rows_per_s"] >= CSV_ROWS_PER_S
              and export["worker_rss_growth_mb"] <= CSV_RSS_MB)
    return _verdict(passed, f"{export['rows']:,} rows at {export['rows_per_s']:,} rows/s, "
                            f"worker RSS +{export['worker_rss_growth_mb']} MB")


def correctness(results: dict) -> dict:
    levels = [level for by_clients in results.get("scenarios", {}).values()
              for level in by_clients.values()]
    conserved = all(level["conservation"]["ok"] for level in levels)
    verified = all(v["ok"] for v in results.get("verify", {}).values())
    drain = results.get("drain")
    return _verdict(conserved and verified and (drain is None or drain["ok"]),
                    f"conservation {conserved} on {len(levels)} runs, ledger verify {verified}, "
                    f"drain {'-' if drain is None else drain['ok']}")


def evaluate(results: dict) -> dict[str, dict]:
    dashboard_run = "skipped" not in results.get("read_side", {}).get("dashboard", {"skipped": 1})
    user_page = "dashboard_user_page" if dashboard_run else "api_user"
    ledger_page = "dashboard_ledger_deep" if dashboard_run else "api_transactions_deep"
    return {
        "hot-treasury @64: >= 1,000 ok/s, p99 <= 150 ms, 0 errors": write_target(results, "hot-treasury", 1000, True),
        "mixed @64: >= 1,000 req/s, p99 <= 150 ms": write_target(results, "mixed", 1000, True),
        "hot-wallet @64: >= 600 ok/s, exact, never negative": _hot_wallet(results),
        "hot-treasury @64: >= 0.75x the ceiling app, p99 <= 120 ms": ceiling_target(results, "hot-treasury"),
        "mixed @64: >= 0.75x the ceiling app, p99 <= 120 ms": ceiling_target(results, "mixed"),
        "throughput does not fall from 8 to 64 clients": convoy_target(results),
        f"user page p95 <= 25 ms ({user_page})": read_target(results, user_page),
        f"ledger page deep p95 <= 25 ms ({ledger_page})": read_target(results, ledger_page),
        "account postings deep p95 <= 25 ms (API)": read_target(results, "api_account_postings_deep"),
        "balance endpoint p95 <= 25 ms": read_target(results, "balance"),
        "every dashboard page p95 <= 50 ms": dashboard_target(results),
        "CSV export >= 50,000 rows/s, worker RSS growth <= 50 MB": csv_target(results),
        "exact: conservation, ledger verify, 64 spends on a balance for 40": correctness(results),
    }


def _hot_wallet(results: dict) -> dict:
    verdict = write_target(results, "hot-wallet", 600, False)
    level = _level(results, "hot-wallet", 64)
    if level is not None and not level["hot_wallet"]["never_negative"]:
        verdict["result"] = "FAIL"
    return verdict
