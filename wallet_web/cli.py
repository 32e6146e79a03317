"""flask commands: `ledger verify`, `ledger seal`, `ledger chain-head`."""
import click
from flask import Flask
from flask.cli import AppGroup

from . import audit, chain
from .moments import moment

ledger_cli = AppGroup("ledger", help="Ledger maintenance.")


@ledger_cli.command("verify")
def verify_command() -> None:
    """Check every ledger invariant; exit 1 when any is broken."""
    report = audit.verify()
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@ledger_cli.command("seal")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many entries per chain; without it, all that committed.")
def seal_command(limit: int | None) -> None:
    """Seal committed transactions and audit events into their hash chains."""
    sealed = chain.seal(limit)
    for head in chain.heads():
        click.echo(f"{head.chain}: sealed {sealed[head.chain]:,}, head {head.seq} {head.hash}")


@ledger_cli.command("chain-head")
def chain_head_command() -> None:
    """Each chain's last sealed seq, hash and time: publish them elsewhere."""
    for head in chain.heads():
        sealed_at = moment(head.sealed_at) if head.sealed_at else "never"
        click.echo(f"{head.chain} {head.seq} {head.hash} {sealed_at}")


def register(app: Flask) -> None:
    from .accounts import users_cli
    from .api_keys import api_keys_cli
    from .approvals import approvals_cli
    from .assets import assets_cli
    from .bulk import bulk_cli
    from .controls import policy_cli
    from .deliverer import events_cli
    from .holds import holds_cli
    from .sweeper import sweep_command
    from .operators import operators_cli
    from .webhooks import webhooks_cli

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
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(events_cli)
