"""Amounts as the dashboard shows them. The ledger keeps integers of an asset's smallest unit;
every page, partial and message writes them through format_amount, with the asset's decimals
(`Asset.scale`) and thousands separators: 12345 is "12,345" in GOLD (scale 0) and "123.45" in
an asset of scale 2. Forms still take integers of the smallest unit; CSV and JSON keep them."""
from __future__ import annotations

from flask import Flask, g
from sqlalchemy import select

from ..extensions import db
from ..models import Asset

MINUS = "\u2212"  # a signed amount's minus: as wide as its plus, so columns line up


def format_amount(value: int | None, asset: str | None = None, *, signed: bool = False,
                  grouped: bool = True) -> str:
    """`value` of `asset` in its decimals; without an asset a whole number (a count). Signed:
    "+5" and "−5" (a movement); otherwise a negative reads "-5" (a balance). Not grouped: no
    thousands separators (the audit trail's details, digits as recorded)."""
    if value is None:
        return ""
    value = int(value)  # a SUM of amounts reads as a Decimal, still a whole number
    scale = scale_of(asset) if asset else 0
    whole, fraction = divmod(abs(value), 10**scale)
    digits = f"{whole:,}" if grouped else str(whole)
    digits += f".{fraction:0{scale}d}" if scale else ""
    if value < 0:
        return (MINUS if signed else "-") + digits
    return ("+" if signed and value > 0 else "") + digits


def scale_of(asset: str) -> int:
    """The asset's decimals, read once per request (the assets are few)."""
    scales = g.get("asset_scales")
    if scales is None:
        scales = g.asset_scales = dict(db.session.execute(select(Asset.code, Asset.scale)).all())
    return scales.get(asset, 0)


def register(app: Flask) -> None:
    app.add_template_filter(format_amount, "amount")
