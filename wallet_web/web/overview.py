"""Overview (/): holdings per asset, today's volume, a 30-day chart, the latest transactions."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

from flask import Blueprint

from .. import kinds, queries, replica
from .charts import daily_bars
from .ledger_browser import owner_names
from .permissions import login_required_everywhere
from .rendering import render

bp = login_required_everywhere(Blueprint("overview", __name__))
CHART_DAYS = 30


@bp.route("/")
@replica.reads
def index():
    now = datetime.now(timezone.utc)
    assets = queries.list_asset_codes()
    latest = queries.list_transactions(queries.TransactionFilters(), limit=10).items
    return render(
        "overview/index.html",
        assets=assets,
        holdings=_holdings(assets),
        today=queries.volume_by_kind(now.date()),
        charts=_charts(assets, now.date()),
        latest=latest,
        owners=owner_names(latest),
    )


def _holdings(assets: list[str]) -> list[dict]:
    """Per asset: what users hold, and each house account's balance (equity is what was issued)."""
    held = queries.wallet_totals()
    house: dict[str, dict[str, int]] = defaultdict(dict)
    for account in queries.house_balances():
        house[account.asset_code][account.kind] = account.balance
    return [{"asset": code, "users": held.get(code, 0), **house[code]} for code in assets]


def _charts(assets: list[str], today: date) -> dict:
    per_asset: dict[str, dict] = defaultdict(dict)
    for row in queries.daily_volume(today - timedelta(days=CHART_DAYS - 1), kinds.CHARTED):
        per_asset[row.asset_code][row.day] = row.amount
    return {code: daily_bars(per_asset[code], today, CHART_DAYS) for code in assets}
