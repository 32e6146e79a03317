"""flask commands: `ledger verify`."""
import click
from flask import Flask
from flask.cli import AppGroup

from . import audit

ledger_cli = AppGroup("ledger", help="Ledger maintenance.")


@ledger_cli.command("verify")
def verify_command() -> None:
    """Check every ledger invariant; exit 1 when any is broken."""
    report = audit.verify()
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


def register(app: Flask) -> None:
    from .accounts import users_cli
    from .api_keys import api_keys_cli
    from .approvals import approvals_cli
    from .assets import assets_cli
    from .bulk import bulk_cli
    from .controls import policy_cli
    from .holds import holds_cli
    from .sweeper import sweep_command
    from .operators import operators_cli

    app.cli.add_command(ledger_cli)
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(assets_cli)
    app.cli.add_command(operators_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(policy_cli)
    app.cli.add_command(approvals_cli)
    app.cli.add_command(holds_cli)
    app.cli.add_command(sweep_command)
    app.cli.add_command(bulk_cli)
