"""Results as Markdown: the tables that bench/README.md shows between its markers."""
from __future__ import annotations

import re

from .common import BENCH
from .targets import evaluate

README = BENCH / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def markdown(results: dict) -> str:
    return "\n".join([_header(results), "", _targets(results), "", _writes(results), "",
                      _database_limit(results), "", _reads(results), ""])


def _header(results: dict) -> str:
    env = results["environment"]
    return (f"Run `{results['run_id']}` ({results['mode']}) on {env['cpus']} CPU cores "
            f"({env['cpu_model']}), {env['memory_gb']} GB, PostgreSQL {env['postgres']}, "
            f"commit `{env['commit']}`; server: `{env['server']}`. Load average before the run: "
            f"{env['loadavg_before']}. Everything (load generator, gunicorn, PostgreSQL, and "
            f"other sessions' tests) shares these cores: see the `other` CPU column.")


def _targets(results: dict) -> str:
    rows = ["| Target | Result | Measured |", "|---|---|---|"]
    for name, verdict in evaluate(results).items():
        rows.append(f"| {name} | **{verdict['result']}** | {verdict['measured']} |")
    return "\n".join(rows)


def _writes(results: dict) -> str:
    rows = ["| Scenario | Clients | req/s | ok/s | movements/s | p50 ms | p95 ms | p99 ms | errors "
            "| refused | conserved | CPU s: gunicorn / postgres / loadgen / other (wall s) "
            "| CPU ms per request: gunicorn / postgres |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for scenario, levels in results.get("scenarios", {}).items():
        for clients, level in levels.items():
            ms, cpu = level["latency_ms"], level["cpu_s"]
            rows.append(
                f"| {_scenario_name(results, scenario)} | {clients} "
                f"| {level['requests_per_s']:,.0f} | {level['ok_per_s']:,.0f} | {_movements(level)} "
                f"| {ms.get('p50')} | {ms.get('p95')} | {ms.get('p99')} | {level['errors']} "
                f"| {level['refused']} | {'yes' if level['conservation']['ok'] else 'NO'} "
                f"| {cpu['gunicorn']} / {cpu['postgres']} / {cpu['loadgen']} / {cpu['other']} "
                f"({cpu['wall']}) | {_per_request(level)} |")
    drain = results.get("drain")
    if drain:
        rows.append("")
        rows.append(f"Drain check: {drain['requests']} concurrent spends of {drain['amount']:,} on "
                    f"a balance of {drain['balance']:,}: {drain['succeeded']} succeeded, "
                    f"{drain['refused']} refused, end balance {drain['end']:,} "
                    f"({'exact' if drain['ok'] else 'WRONG'}).")
    return "\n".join(rows)


def _scenario_name(results: dict, scenario: str) -> str:
    size = results.get("settings", {}).get("batch_size")
    return f"batch ({size:,} items)" if scenario == "batch" and size else scenario


def _movements(level: dict) -> str:
    """Movements posted per second (a batch's items; no balance reads): results before the
    batch scenario have none."""
    per_s = level.get("movements_per_s")
    return "-" if per_s is None else f"{per_s:,.0f}"


def _per_request(level: dict) -> str:
    per = level.get("cpu_ms_per_request")
    if not per:
        return "-"
    text = f"{per['gunicorn']} / {per['postgres']}"
    movement = level.get("cpu_ms_per_movement")  # a batch's
    if movement:
        text += f"; per movement {movement['gunicorn']} / {movement['postgres']}"
    return text


def _ceiling(results: dict) -> str:
    """The project against the stack's ceiling app, level by level (issue 16)."""
    ceiling = results.get("ceiling")
    if not ceiling:
        return "Ceiling app: not run."
    rows = [f"Against the ceiling app (`../shared/bench/ceiling`, same gunicorn.conf.py, its "
            f"{results['ceiling_users']:,} wallets of the bench's users), each level right "
            "after the project's:", "",
            "| Scenario | Clients | project ok/s | ceiling ok/s | ratio | project p99 ms "
            "| ceiling p99 ms | ceiling errors | CPU ms per request, gunicorn: project / ceiling |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for scenario, levels in ceiling.items():
        for clients, level in levels.items():
            mine = results["scenarios"][scenario][clients]
            rows.append(
                f"| {scenario} | {clients} | {mine['ok_per_s']:,.0f} | {level['ok_per_s']:,.0f} "
                f"| **{results['ceiling_ratio'][scenario][clients]}** "
                f"| {mine['latency_ms'].get('p99')} | {level['latency_ms'].get('p99')} "
                f"| {level['errors']} | {mine['cpu_ms_per_request']['gunicorn']} / "
                f"{level['cpu_ms_per_request']['gunicorn']} |")
    return "\n".join(rows)


def _database_limit(results: dict) -> str:
    pg = results.get("pgbench")
    if not pg:
        return "pgbench: not run."
    ratio = results.get("http_db_ratio")  # only when hot-treasury ran
    cpu = pg["cpu_s"]
    text = (f"Database limit (`{pg['command']}`): **{pg['tps']:,.0f} transfers/s**, "
            f"latency {pg['latency_ms']} ms, {pg['failed']:.0f} failed, "
            f"{pg.get('postgres_cpu_ms_per_transfer')} ms of PostgreSQL CPU per transfer; CPU s postgres "
            f"{cpu['postgres']}, pgbench {cpu['pgbench']}, other {cpu['other']} (wall {cpu['wall']}).")
    if ratio:
        text += (f" HTTP/db ratio (hot-treasury ok/s at {ratio['clients']} clients / pgbench tps): "
                 f"**{ratio['ratio']}**.")
    return text


def _reads(results: dict) -> str:
    read = results.get("read_side")
    if not read:
        return "Read side: not run."
    rows = [f"Read side with {results['postings_at_read']:,} postings (history filled in "
            f"{results['fill_seconds']} s; `ledger verify` then took {results['verify_seconds']} s):",
            "", "| Request | samples | p50 ms | p95 ms | max ms | statuses |", "|---|---:|---:|---:|---:|---|"]
    figures = {**read, **read.get("dashboard", {})}
    for name, value in figures.items():
        if isinstance(value, dict) and "p95_ms" in value:
            rows.append(f"| {name} | {value['samples']} | {value['p50_ms']} | {value['p95_ms']} "
                        f"| {value['max_ms']} | {value['statuses']} |")
    if "skipped" in read.get("dashboard", {}):
        rows.append(f"| dashboard pages | skipped: {read['dashboard']['skipped']} | | | | |")
    export = read["csv_export"]
    rows += ["", f"CSV export of all postings: {export['rows']:,} rows, {export['mb']} MB in "
                 f"{export['seconds']} s = **{export['rows_per_s']:,} rows/s** (the worker used "
                 f"{export.get('worker_cpu_s')} CPU s: {export.get('rows_per_worker_cpu_s')} rows per "
                 f"CPU second); worker RSS "
                 f"{export['worker_rss_baseline_mb']} MB before, peak growth "
                 f"**{export['worker_rss_growth_mb']} MB**."]
    return "\n".join(rows)


def update_readme(results: dict) -> None:
    text = README.read_text()
    block = f"{START}\n{markdown(results)}{END}"
    README.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text,
                             flags=re.S))
