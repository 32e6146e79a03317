"""Promises of the ledger that had no test of their own (docs/promises.md): where value may be
written, what the write step sends on PostgreSQL, that house accounts are never locked, and the
bounds the database and the service hold on every amount, reversals included."""
import ast
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from tests.hostile import money
from wallet_web import ROOT_DIR, accounts, assets, errors, ledger, ledger_pool
from wallet_web.extensions import db
from wallet_web.limits import BALANCE_CEILING, SHARD_CEILING
from wallet_web.models import Transaction

PACKAGE = Path(ROOT_DIR) / "wallet_web"
HANG_GUARD_SECONDS = 30  # only a hang reaches it; the promise is that nothing waits at all


def house(asset: str, kind: str) -> int:
    return accounts.ensure_house_accounts(asset)[kind]



class _Recording:
    """A psycopg cursor that tells `record` each statement it executes."""

    def __init__(self, cursor, record):
        self.cursor, self.record = cursor, record

    def execute(self, statement, *args, **kwargs):
        self.record(statement)
        return self.cursor.execute(statement, *args, **kwargs)

    def fetchone(self):
        return self.cursor.fetchone()


@contextmanager
def statements_sent():
    """Collects (SQL, the DBAPI connection's autocommit flag) of every statement the engine or
    the ledger's own pool (ledger_pool.py) sends inside the block."""
    sent = []

    def record(conn, _cursor, statement, _parameters, _context, _executemany):
        sent.append((statement, getattr(conn.connection.dbapi_connection, "autocommit", None)))

    pool = ledger_pool.get()
    lend = pool and pool.connection

    @contextmanager
    def recorded_connection():
        with lend() as conn:
            cursor = conn.ledger_cursor
            conn.ledger_cursor = _Recording(cursor, lambda statement: sent.append(
                (statement, conn.autocommit)))
            try:
                yield conn
            finally:
                conn.ledger_cursor = cursor

    event.listen(db.engine, "before_cursor_execute", record)
    if pool is not None:  # PostgreSQL
        pool.connection = recorded_connection
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        if pool is not None:
            del pool.connection


WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b|ledger_apply", re.I)
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|START TRANSACTION|SAVEPOINT)\b", re.I)


def writes(sent) -> list[str]:
    return [statement for statement, _ in sent if WRITES.search(statement)]


# ---------------------------------------------------------------- ledger.py alone moves value

VALUE_TABLES = {"postings", "Posting", "transactions", "Transaction", "shards", "BalanceShard"}
ACCOUNT_TABLES = {"accounts", "Account"}
RAW_WRITE = re.compile(
    r"UPDATE\s+(accounts|balance_shards)\b[^;]*\bbalance\b"
    r"|INSERT\s+INTO\s+(postings|transactions)\b|ledger_apply\s*\(", re.I | re.S)


def _table_of(call: ast.Call) -> str | None:
    """`accounts` for update(accounts), insert(Account), sa.update(Account.__table__)..."""
    name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
    if name not in ("update", "insert") or not call.args:
        return None
    target = call.args[0]
    while isinstance(target, ast.Attribute):  # Posting.__table__, models.Posting
        target = target.value if target.attr == "__table__" else ast.Name(target.attr)
    return getattr(target, "id", None)


def _balance_values(node: ast.AST) -> list[ast.AST]:
    """The values a `balance=` keyword or a "balance" dict key gives anywhere under node."""
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.keyword) and sub.arg == "balance":
            found.append(sub.value)
        if isinstance(sub, ast.Dict):
            found += [v for k, v in zip(sub.keys, sub.values)
                      if isinstance(k, ast.Constant) and k.value == "balance"]
    return found


def _is_zero(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0 and type(node.value) is int


def value_writes(source: str) -> list[str]:
    """Every place in a module that writes a balance, a shard, a posting or a transaction;
    creating an account or its shards with a balance of literal 0 is not one."""
    tree, found = ast.parse(source), []
    creates_accounts = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            table = _table_of(node)
            verb = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if table in VALUE_TABLES and not (verb == "insert" and table in ("shards", "BalanceShard")):
                found.append(f"line {node.lineno}: {verb}({table})")
            if table in ("shards", "BalanceShard") and verb == "insert":
                creates_accounts = True
            if table in ACCOUNT_TABLES and verb == "insert":
                creates_accounts = True
            if getattr(node.func, "id", None) in ("Posting", "Transaction", "BalanceShard"):
                found.append(f"line {node.lineno}: {node.func.id}(...)")
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "balance" for t in targets):
                found.append(f"line {node.lineno}: .balance assigned")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and RAW_WRITE.search(node.value):
            found.append(f"line {node.lineno}: SQL {RAW_WRITE.search(node.value).group(0)!r}")
    for node in ast.walk(tree):  # update(accounts) ... .values(balance=...) in one statement
        if isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.ClassDef,
                                                                 ast.AsyncFunctionDef)):
            calls = [c for c in ast.walk(node) if isinstance(c, ast.Call)]
            if any(_table_of(c) in ACCOUNT_TABLES and getattr(c.func, "id", None) == "update"
                   for c in calls) and _balance_values(node):
                found.append(f"line {node.lineno}: update(accounts) of the balance")
    if creates_accounts:  # new accounts and shards start at 0, nothing else
        found += [f"line {v.lineno}: balance = {ast.unparse(v)}"
                  for v in _balance_values(tree) if not _is_zero(v)]
    return sorted(set(found))


def modules_writing_value() -> dict[str, list[str]]:
    return {str(path.relative_to(ROOT_DIR)): found for path in sorted(PACKAGE.rglob("*.py"))
            if (found := value_writes(path.read_text()))}


def test_only_ledger_py_writes_balances_shards_postings_or_transactions():
    writers = modules_writing_value()
    ledger_writes = writers.pop("wallet_web/ledger.py")
    assert writers == {}
    # the scan sees the ledger's own writes, so it would see them anywhere else
    assert any("update(accounts)" in w for w in ledger_writes)
    assert any("update(shards)" in w for w in ledger_writes)
    assert any("insert(postings)" in w for w in ledger_writes)
    assert any("ledger_apply" in w for w in ledger_writes)


@pytest.mark.parametrize("line", [
    "conn.execute(update(accounts).where(accounts.c.id == 1).values(balance=0))",
    "conn.execute(update(Account).values(balance=Account.balance + 5))",
    "conn.execute(insert(postings), rows)",
    "db.session.add(Transaction(kind='topup'))",
    "conn.execute(update(shards).values(balance=1))",
    "account.balance += 5",
    "conn.exec_driver_sql('UPDATE accounts SET balance = balance + 1')",
    "conn.exec_driver_sql('insert into postings (amount) values (1)')",
    "rows = [{'account_id': 1, 'balance': 7}]; conn.execute(insert(accounts), rows)",
])
def test_the_scan_finds_each_way_of_writing_value(line):
    assert value_writes(line)


def test_the_scan_lets_accounts_be_created_at_zero_and_their_status_change():
    source = PACKAGE.joinpath("accounts.py").read_text()
    assert "insert(accounts)" in source and "update(accounts)" in source
    assert value_writes(source) == []


# ---------------------------------------------------------------- PostgreSQL's write step


def test_a_topup_on_postgresql_writes_with_one_autocommitted_call_of_ledger_apply(make_user):
    user = make_user()
    ledger.topup(user, "GOLD", 1, "warm-the-account-cache")

    with statements_sent() as sent:
        ledger.topup(user, "GOLD", 5, "t-1")

    assert writes(sent) == [ledger.APPLY]
    assert not [s for s, _ in sent if TRANSACTION_CONTROL.search(s)]
    assert all(autocommit is True for _, autocommit in sent), sent  # no transaction is held


def test_a_topup_does_not_wait_for_a_lock_on_the_treasury_row(app, make_user, database_url):
    user, treasury = make_user(), house("GOLD", "treasury")
    db.session.rollback()
    result = {}

    def top_up():
        with app.app_context():
            try:
                result["receipt"] = ledger.topup(user, "GOLD", 5, "t-locked-treasury")
            except Exception as error:  # asserted below
                result["error"] = error
            finally:
                db.session.remove()

    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        # the lock an UPDATE of the treasury row takes (FOR UPDATE would also block the
        # postings' foreign-key check, which only reads the row's key)
        holder.execute("SELECT id FROM accounts WHERE id = %s FOR NO KEY UPDATE", (treasury,))
        worker = threading.Thread(target=top_up)
        worker.start()
        worker.join(HANG_GUARD_SECONDS)
        finished = not worker.is_alive()
        holder.rollback()
    worker.join(HANG_GUARD_SECONDS)
    assert finished, "the top-up waited for the treasury row"
    assert "error" not in result, result.get("error")
    assert result["receipt"].postings


# ---------------------------------------------------------------- bounds


@pytest.mark.both_backends
@pytest.mark.parametrize("amount, constraint", [
    (0, "ck_postings_amount_non_zero"),
    (SHARD_CEILING + 1, "ck_postings_amount_within_ceiling"),
    (-(SHARD_CEILING + 1), "ck_postings_amount_within_ceiling"),
])
def test_the_database_refuses_a_posting_amount_of_zero_or_beyond_the_ceiling(
        make_user, wallet_of, amount, constraint):
    user = make_user(balance=10)
    tx_id = db.session.execute(select(func.max(Transaction.id))).scalar_one()
    with pytest.raises(IntegrityError, match=constraint):
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO postings (transaction_id, account_id, amount, "
                              "created_at) VALUES (:tx, :account, :amount, CURRENT_TIMESTAMP)"),
                         {"tx": tx_id, "account": wallet_of(user), "amount": amount})


@pytest.mark.both_backends
def test_the_database_takes_a_posting_amount_at_the_ceiling(make_user, wallet_of):
    """So the refusals above are the bound's, not the statement's."""
    make_user(balance=10)  # a transaction to attach the posting to
    tx_id = db.session.execute(select(func.max(Transaction.id))).scalar_one()
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO postings (transaction_id, account_id, amount, created_at) "
                          "VALUES (:tx, :account, :amount, CURRENT_TIMESTAMP)"),
                     {"tx": tx_id, "account": house("GOLD", "equity"), "amount": -SHARD_CEILING})


@pytest.mark.both_backends
def test_a_wallet_leg_above_ten_to_the_fifteen_is_refused_before_the_database(make_user,
                                                                              wallet_of):
    wallet, treasury = wallet_of(make_user()), house("GOLD", "treasury")
    amount = BALANCE_CEILING + 1  # a house leg may be this large; a wallet leg may not
    legs = [ledger.Leg(treasury, -amount), ledger.Leg(wallet, amount)]
    before = money()

    with statements_sent() as sent, pytest.raises(errors.AmountTooLarge) as refused:
        ledger.post("adjustment", legs, "a-huge")

    assert refused.value.details["requested"] == amount
    assert writes(sent) == []
    assert money() == before


@pytest.mark.both_backends
def test_a_reversal_above_a_lowered_max_amount_is_refused_and_moves_nothing(make_user):
    user = make_user()
    topup = ledger.topup(user, "GOLD", 1000, "t-1")
    db.session.rollback()
    assets.set_limits("GOLD", max_amount=999)
    before = money()

    with pytest.raises(errors.AmountTooLarge) as refused:
        ledger.reverse(topup.id, "r-1")

    assert refused.value.code == "amount_too_large" and refused.value.status == 422
    assert refused.value.details == {"asset": "GOLD", "max_amount": 999, "requested": 1000}
    assert money() == before
