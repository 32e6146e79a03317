"""Assets and their money limits: the largest amount one movement may move into or out of a
wallet, and the largest balance a wallet may hold. The ledger's write step reads them from
the database on every movement, so a change applies at once in every process."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select, update

from . import errors
from .errors import InvalidLimits
from .extensions import db
from .limits import BALANCE_CEILING
from .models import Asset

assets = Asset.__table__


def list_assets() -> list[Asset]:
    return list(db.session.scalars(select(Asset).order_by(Asset.code)))


def set_limits(code: str, *, max_amount: int | None = None,
               max_balance: int | None = None) -> Asset:
    """Change one or both limits; 1 <= max_amount <= max_balance <= BALANCE_CEILING."""
    asset = db.session.get(Asset, code)
    if asset is None:
        raise errors.UnknownAsset(f"asset {code!r} does not exist", asset=code)
    amount = asset.max_amount if max_amount is None else max_amount
    balance = asset.max_balance if max_balance is None else max_balance
    _check_limits(amount, balance)
    db.session.execute(update(assets).where(assets.c.code == code)
                       .values(max_amount=amount, max_balance=balance))
    db.session.commit()
    db.session.refresh(asset)
    return asset


def _check_limits(max_amount: int, max_balance: int) -> None:
    if not all(type(value) is int for value in (max_amount, max_balance)):
        raise InvalidLimits("limits are whole numbers of the asset's smallest unit")
    if not 1 <= max_amount <= max_balance <= BALANCE_CEILING:
        raise InvalidLimits(f"need 1 <= max_amount ({max_amount:,}) <= max_balance "
                            f"({max_balance:,}) <= {BALANCE_CEILING:,}")


# ---------------------------------------------------------------- CLI


assets_cli = AppGroup("assets", help="List assets and set their money limits.")


@assets_cli.command("list")
def list_command() -> None:
    """Assets with their limits."""
    for asset in list_assets():
        click.echo(f"{asset.code}\t{asset.name}\tmax_amount={asset.max_amount}\t"
                   f"max_balance={asset.max_balance}")


@assets_cli.command("set-limits")
@click.argument("code")
@click.option("--max-amount", type=click.IntRange(min=1), help="largest amount per movement")
@click.option("--max-balance", type=click.IntRange(min=1), help="largest wallet balance")
def set_limits_command(code: str, max_amount: int | None, max_balance: int | None) -> None:
    """Set an asset's limits (in its smallest unit); applies to the next movement."""
    try:
        asset = set_limits(code, max_amount=max_amount, max_balance=max_balance)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{asset.code}: max_amount={asset.max_amount} max_balance={asset.max_balance}")
