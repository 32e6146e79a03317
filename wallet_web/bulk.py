"""Bulk grants: many players credited from one uploaded file, under the operator controls.

    upload -> preview (nothing is stored unless the file is clean) -> draft
    draft  -> posting                      (every asset's total below its approval threshold,
                                            within the maker's daily limit)
    draft  -> pending -> posting | rejected | expired   (four-eyes, the batch as one request)
    posting -> done

Posting runs in the background (a thread of the process that submitted or approved it), a
thousand rows per ledger batch; each batch's outcomes and the progress are written together,
and a poster reports a heartbeat with them. A grant whose poster died (a closed tab does not
matter; a killed process does) is resumed by `flask sweep`. Every row's reference comes from
the file's hash and line, so a resumed grant, or the same file uploaded again, replays what
was posted instead of moving it twice.
"""
from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Iterator

import click
from flask import current_app, g, has_request_context
from flask.cli import AppGroup
from sqlalchemy import ARRAY, any_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from . import approvals, audit_events, batch, bulk_csv, controls, errors, events, kinds, ledger
from .accounts import MAX_REASON, SYSTEM_USERNAME, write_transaction
from .approvals import Person
from .audit_events import Who
from .bulk_csv import Problem, Row
from .extensions import db
from .inputs import holds_nul
from .limits import BALANCE_CEILING
from .models import (
    SUBMITTED_FILE, Asset, BulkGrant, BulkGrantOutcome, BulkGrantRow, BulkGrantTotal, User, utcnow,
)

grants = BulkGrant.__table__
totals_table = BulkGrantTotal.__table__
rows_table = BulkGrantRow.__table__
outcomes_table = BulkGrantOutcome.__table__
users = User.__table__
USER_COLUMN = {"user_id": users.c.id, "external_id": users.c.external_id,
               "username": users.c.username}  # a file's user column -> the users table's
STALE_AFTER = timedelta(minutes=1)  # a posting grant without a heartbeat this long is resumed
LARGEST_SHOWN = 10
LOOKUP_CHUNK = 5_000  # values per IN (...) when resolving users (SQLite allows 32,766)



@dataclass(frozen=True)
class AssetTotal:
    asset: str
    rows: int
    total: int
    threshold: int

    @property
    def needs_approval(self) -> bool:
        return self.total >= self.threshold


@dataclass(frozen=True)
class Preview:
    filename: str
    kind: str
    sha256: str
    user_column: str
    rows: int
    problems: tuple[Problem, ...]  # invalid rows, unknown or closed users, unknown assets
    totals: tuple[AssetTotal, ...]
    largest: tuple[Row, ...]
    earlier: tuple  # bulk_grants rows of the same file already submitted
    grant_id: int | None  # the draft, when the file is clean


# ---------------------------------------------------------------- preview


def preview(data: bytes, filename: str, kind: str, maker: Person) -> Preview:
    """Read and check the file; a clean one becomes a draft grant of `maker`'s."""
    if kind not in kinds.BULK_KINDS:
        raise errors.InvalidRequest(f"kind must be one of {', '.join(kinds.BULK_KINDS)}",
                                    field="kind")
    parsed = bulk_csv.parse(data)
    user_ids, problems = _resolve(parsed)
    good = [row for row in parsed.rows if row.line in user_ids]
    totals = _totals(good)
    found = Preview(
        filename=_filename(filename), kind=kind, sha256=parsed.sha256,
        user_column=parsed.user_column, rows=len(parsed.rows) + len(parsed.problems),
        problems=tuple(sorted([*parsed.problems, *problems], key=lambda p: p.line)),
        totals=totals, largest=tuple(sorted(good, key=lambda r: -r.amount)[:LARGEST_SHOWN]),
        earlier=tuple(earlier_grants(parsed.sha256)), grant_id=None)
    if found.problems:
        return found
    grant_id = _draft(found, good, user_ids, maker)
    return replace(found, grant_id=grant_id)


def _filename(name: str) -> str:
    name = (name or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable())[:255] or "upload.csv"


def _resolve(parsed: bulk_csv.ParsedFile) -> tuple[dict[int, int], list[Problem]]:
    """line -> user id for rows naming an open user of a known asset; problems for the rest."""
    column = USER_COLUMN[parsed.user_column]
    wanted = sorted({row.user for row in parsed.rows})
    if parsed.user_column == "user_id":
        wanted = [int(value) for value in wanted]
    found = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start:start + LOOKUP_CHUNK]
        for row in db.session.execute(select(column, users.c.id, users.c.status).where(
                _one_of(column, chunk), users.c.username != SYSTEM_USERNAME)):
            found[str(row[0])] = (row.id, row.status)
    max_amount = dict(db.session.execute(select(Asset.code, Asset.max_amount)).all())
    resolved, problems = {}, []
    for row in parsed.rows:
        user = found.get(row.user)
        if user is None:
            problems.append(Problem(row.line, f"no user has {parsed.user_column} {row.user!r}"))
        elif user[1] == "closed":
            problems.append(Problem(row.line, f"user {row.user!r} is closed"))
        elif row.asset not in max_amount:
            problems.append(Problem(row.line, f"no asset {row.asset!r}"))
        elif row.amount > max_amount[row.asset]:
            problems.append(Problem(row.line, f"{row.amount:,} is above the {row.asset} maximum "
                                              f"of {max_amount[row.asset]:,} per movement"))
        else:
            resolved[row.line] = user[0]
    return resolved, problems


def _one_of(column, values: list):
    """column IN values: one array parameter on PostgreSQL, not one parameter per value."""
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam("values", values, type_=ARRAY(column.type)))
    return column.in_(values)


def _totals(rows: list[Row]) -> tuple[AssetTotal, ...]:
    count, total = defaultdict(int), defaultdict(int)
    for row in rows:
        count[row.asset] += 1
        total[row.asset] += row.amount
    for asset, amount in total.items():
        if amount > BALANCE_CEILING:
            raise errors.InvalidUpload(f"the {asset} total {amount:,} is above {BALANCE_CEILING:,}:"
                                       " split the file", asset=asset, total=amount)
    return tuple(AssetTotal(asset, count[asset], total[asset],
                            controls.policy_for(asset).approval_threshold)
                 for asset in sorted(total))


def earlier_grants(sha256: str) -> list:
    return db.session.execute(select(grants).where(
        grants.c.file_sha256 == sha256, grants.c.status != "draft").order_by(grants.c.id)).all()


def _draft(found: Preview, rows: list[Row], user_ids: dict[int, int], maker: Person) -> int:
    now = utcnow()
    with write_transaction() as conn:
        grant_id = conn.execute(insert(grants).values(
            file_sha256=found.sha256, filename=found.filename, user_column=found.user_column,
            kind=found.kind, status="draft", rows_total=len(rows), rows_done=0, posted=0,
            replayed=0, refused=0, needs_approval=any(t.needs_approval for t in found.totals),
            maker_id=maker.id, maker=maker.label, created_at=now,
        ).returning(grants.c.id)).scalar_one()
        conn.execute(insert(totals_table), [
            {"grant_id": grant_id, "asset_code": t.asset, "rows": t.rows, "total": t.total}
            for t in found.totals])
        _insert_many(conn, rows_table, [
            (grant_id, row.line, user_ids[row.line], row.user[:64], row.asset, row.amount,
             row.reason) for row in rows])
        audit_events.record("bulk.uploaded", conn=conn, who=_who(maker), object_type="bulk_grant",
                            object_id=grant_id, filename=found.filename, sha256=found.sha256,
                            rows=len(rows), kind=found.kind,
                            totals={t.asset: t.total for t in found.totals})
    return grant_id


def _insert_many(conn, table, rows: list[tuple]) -> None:
    """Rows in the table's column order, in the caller's transaction: COPY on PostgreSQL
    (a hundred thousand rows in about a second), executemany on SQLite (in-process)."""
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), [dict(zip(table.c.keys(), row)) for row in rows])
        return
    columns = ", ".join(table.c.keys())
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _who(person: Person) -> Who:
    return Who(person.label, operator_id=person.id)


# ---------------------------------------------------------------- submitting and deciding


def submit(grant_id: int, maker: Person, reason_code: str, ticket: str | None,
           description: str, *, in_background: bool = True) -> str:
    """Send a draft on: `posting` (started at once on a thread, unless the caller runs it)
    or `pending` (four-eyes)."""
    try:
        grant = get(grant_id)
        status = _submit(grant, maker, reason_code, ticket, description)
    except errors.WalletError as error:
        audit_events.record_refusal("bulk.refused", who=_who(maker), object_type="bulk_grant",
                                    object_id=grant_id, attempted="submit", error=error.code,
                                    message=error.message)
        raise
    if status == "posting" and in_background:
        start(grant_id)
    return status


def _submit(grant, maker: Person, reason_code: str, ticket: str | None, description: str) -> str:
    if grant.maker_id != maker.id:
        raise errors.NotYourUpload("only the operator who uploaded this file can submit it",
                                   grant_id=grant.id)
    if grant.status != "draft":
        raise errors.RequestDecided(f"bulk grant #{grant.id} was already submitted",
                                    grant_id=grant.id, status=grant.status)
    _refuse_submitted_file(grant)
    fields = dict(reason_code=controls.check_reason_code(reason_code),
                  ticket=controls.check_ticket(ticket), description=_checked(description))
    now = utcnow()
    totals = totals_of(grant.id)
    needs_approval = any(total.total >= controls.policy_for(total.asset_code).approval_threshold
                         for total in totals)
    status = "pending" if needs_approval else "posting"
    try:
        return _send_on(grant, maker, fields, totals, status, now)
    except IntegrityError:  # the same file, submitted at the same moment as another draft of it
        _refuse_submitted_file(grant)
        raise


def _send_on(grant, maker: Person, fields: dict, totals: list, status: str, now) -> str:
    expires = now + timedelta(hours=current_app.config["APPROVAL_EXPIRY_HOURS"])
    needs_approval = status == "pending"
    with write_transaction() as conn:
        if status == "posting":
            approvals.lock_maker(conn, maker.id)
            for total in totals:
                limit = controls.daily_limit_of(maker.id, total.asset_code)
                approvals.check_daily_limit(conn, maker.id, total.asset_code, total.total,
                                            limit, now)
        changed = conn.execute(update(grants).where(
            grants.c.id == grant.id, grants.c.status == "draft",
        ).values(status=status, submitted_at=now, needs_approval=needs_approval,
                 expires_at=expires if needs_approval else None, request_id=_request_id(),
                 **fields)).rowcount
        if not changed:
            raise errors.RequestDecided(f"bulk grant #{grant.id} was already submitted",
                                        grant_id=grant.id)
        audit_events.record("approval.requested" if status == "pending" else "bulk.submitted",
                            conn=conn, who=_who(maker), object_type="bulk_grant",
                            object_id=grant.id, rows=grant.rows_total, **fields)
    return status


def _refuse_submitted_file(grant) -> None:
    for earlier in earlier_grants(grant.file_sha256):
        if earlier.status in SUBMITTED_FILE:
            raise errors.FileAlreadySubmitted(
                f"this file was already submitted as bulk grant #{earlier.id} "
                f"({earlier.status}): nothing was sent again", grant_id=earlier.id,
                status=earlier.status)


def _checked(description) -> str:
    text = (description or "").strip()
    if not text or len(text) > MAX_REASON or holds_nul(text):
        raise errors.InvalidRequest(f"reason: 1 to {MAX_REASON} characters, required",
                                    field="description")
    return text


def _request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def approve(grant_id: int, checker: Person, reason: str) -> None:
    _decide(grant_id, checker, reason, "posting", "approval.approved", "approved")
    start(grant_id)


def reject(grant_id: int, checker: Person, reason: str) -> None:
    _decide(grant_id, checker, reason, "rejected", "approval.rejected", "rejected")


def _decide(grant_id: int, checker: Person, reason: str, status: str, action: str,
            verb: str) -> None:
    who = _who(checker)
    try:
        grant = get(grant_id)
        approvals.check_checker(grant.maker_id, checker, grant_id=grant.id)
        reason = approvals.checked_decision_reason(reason)
        now = utcnow()
        with write_transaction() as conn:
            changed = conn.execute(update(grants).where(
                grants.c.id == grant.id, grants.c.status == "pending", grants.c.expires_at > now,
            ).values(status=status, checker_id=checker.id, checker=checker.label,
                     decision_reason=reason, decided_at=now).returning(*grants.c)).first()
            if changed:
                events.emit(conn, "approval.decided", events.decision("bulk_grant", changed, verb))
                audit_events.record(action, conn=conn, who=who, object_type="bulk_grant",
                                    object_id=grant.id, reason=reason)
        if not changed:
            expire_due()
            grant = get(grant_id)
            raise (errors.RequestExpired if grant.status == "expired" else errors.RequestDecided)(
                f"bulk grant #{grant.id} is {grant.status}: it cannot be {verb}",
                grant_id=grant.id, status=grant.status)
    except errors.WalletError as error:
        audit_events.record_refusal("approval.refused", who=who, object_type="bulk_grant",
                                    object_id=grant_id, attempted=verb, error=error.code,
                                    message=error.message)
        raise


def expire_due() -> int:
    return approvals.expire_pending(grants, "bulk_grant")


# ---------------------------------------------------------------- posting


def start(grant_id: int) -> None:
    """Post the grant on a thread of this process; the request that started it returns."""
    app = current_app._get_current_object()

    def work():
        with app.app_context():
            run(grant_id)

    threading.Thread(target=work, name=f"bulk-grant-{grant_id}", daemon=True).start()


def run(grant_id: int, on_progress=None) -> bool:
    """Post what is left of a grant in `posting`; False when another poster holds it."""
    lease = _lease(grant_id)
    if lease is None:
        return False
    grant = get(grant_id)
    actor = ledger.Actor(grant.maker, grant.maker_id)
    metadata = _metadata(grant)
    for rows in _chunks(grant_id):
        items = [_item(grant, row, metadata) for row in rows]
        outcomes = batch.post_many(items, actor=actor)
        lease = _record(grant_id, lease, rows, outcomes)
        if lease is None:
            return False  # the lease was lost (this poster stalled): its successor goes on
        if on_progress:
            progress = get(grant_id)
            db.session.rollback()  # no transaction left open while the caller reports it
            on_progress(progress)
    _finish(grant_id)
    return True


def _lease(grant_id: int):
    """The grant's heartbeat this poster wrote (its lease), or None when another holds it."""
    now = utcnow()
    with write_transaction() as conn:
        taken = conn.execute(update(grants).where(
            grants.c.id == grant_id, grants.c.status == "posting",
            (grants.c.heartbeat_at.is_(None)) | (grants.c.heartbeat_at < now - STALE_AFTER),
        ).values(heartbeat_at=now)).rowcount
    return now if taken else None


def _metadata(grant) -> dict:
    metadata = {"reason_code": grant.reason_code, "bulk_grant": str(grant.id)}
    if grant.ticket:
        metadata["ticket"] = grant.ticket
    if grant.request_id:
        metadata["request_id"] = grant.request_id
    if grant.checker:
        metadata.update(checker=grant.checker, checker_id=str(grant.checker_id))
    return metadata


def reference_of(sha256: str, line: int) -> str:
    return f"bulk:{sha256[:40]}:{line}"


def _item(grant, row, metadata: dict) -> batch.Item:
    return batch.Item(grant.kind, row.user_id, row.asset_code, row.amount,
                      reference_of(grant.file_sha256, row.line),
                      description=row.reason or grant.description, metadata=metadata)


def _chunks(grant_id: int) -> Iterator[list]:
    """The rows without an outcome, a ledger batch at a time, in line order."""
    after = 0
    while True:
        db.session.rollback()
        done = select(outcomes_table.c.line).where(outcomes_table.c.grant_id == grant_id,
                                                   outcomes_table.c.line == rows_table.c.line)
        rows = db.session.execute(select(rows_table).where(
            rows_table.c.grant_id == grant_id, rows_table.c.line > after, ~done.exists(),
        ).order_by(rows_table.c.line).limit(batch.MAX_ITEMS)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].line


def _record(grant_id: int, lease, rows: list, outcomes: list[batch.Outcome]):
    """The batch's outcomes and the grant's progress, in one transaction, while this poster
    still holds the lease; the renewed lease, or None when it was lost."""
    values = [_outcome_row(grant_id, row, outcome) for row, outcome in zip(rows, outcomes)]
    tally = Counter(value[2] for value in values)
    now = utcnow()
    with write_transaction() as conn:
        held = conn.execute(update(grants).where(
            grants.c.id == grant_id, grants.c.status == "posting", grants.c.heartbeat_at == lease,
        ).values(rows_done=grants.c.rows_done + len(values),
                 posted=grants.c.posted + tally["posted"],
                 replayed=grants.c.replayed + tally["replayed"],
                 refused=grants.c.refused + tally["refused"], heartbeat_at=now)).rowcount
        if held:
            _insert_many(conn, outcomes_table, values)
    return now if held else None


def _outcome_row(grant_id: int, row, outcome: batch.Outcome) -> tuple:
    """(grant_id, line, status, transaction_id, error_code, message), the table's order."""
    error = outcome.error
    if isinstance(error, errors.IdempotencyConflict):  # its reference: this file, this line
        return (grant_id, row.line, "replayed", error.details.get("transaction_id"), None,
                "already posted by an earlier grant of this file: nothing moved")
    if error is not None:
        return (grant_id, row.line, "refused", None, error.code, error.message)
    if outcome.receipt.replayed:
        return (grant_id, row.line, "replayed", outcome.receipt.id, None,
                "already posted by an earlier run of this file")
    return (grant_id, row.line, "posted", outcome.receipt.id, None, None)


def _finish(grant_id: int) -> None:
    with write_transaction() as conn:
        grant = conn.execute(update(grants).where(
            grants.c.id == grant_id, grants.c.status == "posting",
        ).values(status="done", finished_at=utcnow()).returning(*grants.c)).first()
        if grant is not None:
            audit_events.record("bulk.finished", conn=conn, who=Who(grant.maker, grant.maker_id),
                                object_type="bulk_grant", object_id=grant_id,
                                posted=grant.posted, replayed=grant.replayed,
                                refused=grant.refused)


def resume_stale() -> int:
    """Finish grants whose poster stopped (the sweeper calls this); how many were taken up."""
    now = utcnow()
    db.session.rollback()
    stale = db.session.scalars(select(grants.c.id).where(
        grants.c.status == "posting",
        (grants.c.heartbeat_at.is_(None) & (grants.c.submitted_at < now - STALE_AFTER))
        | (grants.c.heartbeat_at < now - STALE_AFTER))).all()
    return sum(run(grant_id) for grant_id in stale)


# ---------------------------------------------------------------- reading


def get(grant_id: int):
    db.session.rollback()
    grant = db.session.execute(select(grants).where(grants.c.id == grant_id)).first()
    if grant is None:
        raise errors.UnknownBulkGrant(f"bulk grant {grant_id} does not exist", grant_id=grant_id)
    return grant


def totals_of(grant_id: int) -> list:
    return db.session.execute(select(totals_table).where(totals_table.c.grant_id == grant_id)
                              .order_by(totals_table.c.asset_code)).all()


def outcomes(grant_id: int, *, refused_only: bool = False, after: int = 0,
             limit: int | None = None):
    """Each row with its outcome (None until posted), in line order, after line `after`."""
    joined = (outcomes_table.c.grant_id == rows_table.c.grant_id) & (
        outcomes_table.c.line == rows_table.c.line)
    query = (select(rows_table, outcomes_table.c.status, outcomes_table.c.transaction_id,
                    outcomes_table.c.error_code, outcomes_table.c.message)
             .join_from(rows_table, outcomes_table, joined, isouter=True)
             .where(rows_table.c.grant_id == grant_id, rows_table.c.line > after)
             .order_by(rows_table.c.line))
    if refused_only:
        query = query.where(outcomes_table.c.status == "refused")
    if limit:
        query = query.limit(limit)
    return db.session.execute(query)


def largest(grant_id: int) -> list:
    return db.session.execute(select(rows_table).where(rows_table.c.grant_id == grant_id)
                              .order_by(rows_table.c.amount.desc(), rows_table.c.line)
                              .limit(LARGEST_SHOWN)).all()


def recent(limit: int = 50) -> list:
    return db.session.execute(select(grants).where(grants.c.status != "draft")
                              .order_by(grants.c.id.desc()).limit(limit)).all()


def pending(decider_id: int | None = None) -> list:
    """Grants waiting for a decision (by `decider_id`: not the ones they made)."""
    return db.session.execute(_pending(select(grants), decider_id).order_by(grants.c.id)).all()


def pending_count(decider_id: int | None = None) -> int:
    return db.session.execute(_pending(select(func.count()).select_from(grants),
                                       decider_id)).scalar_one()


def _pending(query, decider_id: int | None):
    query = query.where(grants.c.status == "pending", grants.c.expires_at > utcnow())
    return query if decider_id is None else query.where(grants.c.maker_id != decider_id)


# ---------------------------------------------------------------- CLI


bulk_cli = AppGroup("bulk", help="Bulk grants from a CSV file.")


@bulk_cli.command("post")
@click.argument("file", type=click.File("rb"))
@click.option("--reason-code", required=True, help="One of the admins' reason codes.")
@click.option("--reason", required=True, help="Why, in words (recorded on every row).")
@click.option("--operator", "username", required=True,
              help="The operator in whose name the grant is made (the maker).")
@click.option("--kind", type=click.Choice(kinds.BULK_KINDS), default="bonus", show_default=True)
@click.option("--ticket", default=None, help="A ticket id or link.")
@click.option("--yes", is_flag=True, help="Post (or send for approval) after the preview.")
def post_command(file, reason_code, reason, username, kind, ticket, yes) -> None:
    """Preview FILE; with --yes submit it like the dashboard does, and post it here."""
    maker = _cli_maker(username)
    try:
        found = preview(file.read(bulk_csv.MAX_BYTES + 1), file.name, kind, maker)
    except errors.InvalidUpload as error:
        raise click.ClickException(error.message) from None
    _echo_preview(found)
    if found.grant_id is None:
        raise click.ClickException(f"{len(found.problems)} row(s) cannot be granted: nothing moved")
    if not yes:
        click.echo(f"Nothing moved (draft bulk grant #{found.grant_id}). "
                   "Run again with --yes to submit it.")
        return
    try:
        status = submit(found.grant_id, maker, reason_code, ticket, reason, in_background=False)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    if status == "pending":
        click.echo(f"Sent for approval: bulk grant #{found.grant_id} (/bulk/{found.grant_id}).")
        return
    run(found.grant_id, on_progress=lambda g: click.echo(
        f"{g.rows_done:,} of {g.rows_total:,} rows done", err=True))
    _echo_result(get(found.grant_id))


def _cli_maker(username: str):
    from .operators import ROLE_GRANTS, find_operator
    operator = find_operator(username)
    if operator is None or not operator.is_active or "operator" not in ROLE_GRANTS[operator.role]:
        raise click.ClickException(f"no active operator {username!r} with the operator role")
    return SimpleNamespace(id=operator.id, label=f"operator:{operator.username}")


def _echo_preview(found: Preview) -> None:
    click.echo(f"{found.filename}: {found.rows:,} row(s), users by {found.user_column}, "
               f"sha256 {found.sha256[:16]}…")
    for total in found.totals:
        approval = "needs approval" if total.needs_approval else "below the approval threshold"
        click.echo(f"  {total.asset}: {total.rows:,} row(s), total {total.total:,} ({approval})")
    for row in found.largest[:5]:
        click.echo(f"  largest: line {row.line}: {row.user} {row.amount:,} {row.asset}")
    for earlier in found.earlier:
        click.echo(f"  this file was already submitted as bulk grant #{earlier.id} "
                   f"({earlier.status})")
    for problem in found.problems[:20]:
        click.echo(f"  line {problem.line}: {problem.message}", err=True)


def _echo_result(grant) -> None:
    click.echo(f"bulk grant #{grant.id} {grant.status}: {grant.posted:,} posted, "
               f"{grant.replayed:,} already posted, {grant.refused:,} refused")
    if grant.refused:
        raise click.exceptions.Exit(1)
