"""Read-only proofs of the ledger's invariants over the whole database (`ledger verify`),
and of the hash chains: each is recomputed from the rows it sealed (chain.py)."""
from dataclasses import dataclass, field

from sqlalchemy import text

from . import chain, rollups
from .extensions import db
from .models import CHAINS

# Each check is a query returning offending rows; an empty result means the invariant holds.
CHECKS = {
    "every transaction has at least two postings": """
        SELECT t.id, COUNT(p.id) AS legs FROM transactions t
        LEFT JOIN postings p ON p.transaction_id = t.id
        GROUP BY t.id HAVING COUNT(p.id) < 2""",
    "every posting's account and transaction and every transaction's API key exist": """
        SELECT 'posting', p.id FROM postings p
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id)
        OR NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = p.transaction_id)
        UNION ALL
        SELECT 'transaction', t.id FROM transactions t WHERE t.api_key_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = t.api_key_id)""",
    "every transaction has exactly one transaction.posted event": """
        SELECT t.id, COUNT(e.id) AS events FROM transactions t
        LEFT JOIN events e ON e.transaction_id = t.id AND e.type = 'transaction.posted'
        GROUP BY t.id HAVING COUNT(e.id) <> 1""",
    "every transaction sums to zero per asset": """
        SELECT p.transaction_id, a.asset_code, SUM(p.amount) AS total
        FROM postings p JOIN accounts a ON a.id = p.account_id
        GROUP BY p.transaction_id, a.asset_code HAVING SUM(p.amount) <> 0""",
    "every cached balance equals the sum of its postings": """
        SELECT a.id, a.balance + COALESCE(s.total, 0) AS cached, COALESCE(p.total, 0) AS posted
        FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(balance) AS total FROM balance_shards
                   GROUP BY account_id) s ON s.account_id = a.id
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM postings
                   GROUP BY account_id) p ON p.account_id = a.id
        WHERE a.balance + COALESCE(s.total, 0) <> COALESCE(p.total, 0)""",
    "every wallet posting's balance_after continues its chain": """
        SELECT id, account_id, balance_after, running FROM (
            SELECT p.id, p.account_id, p.balance_after,
                   SUM(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.id) AS running
            FROM postings p JOIN accounts a ON a.id = p.account_id
            WHERE NOT a.allow_negative) chain
        WHERE balance_after IS NULL OR balance_after <> running""",
    "no wallet is or was below zero": """
        SELECT a.id, a.balance FROM accounts a
        WHERE NOT a.allow_negative AND (a.balance < 0 OR EXISTS (
            SELECT 1 FROM postings p WHERE p.account_id = a.id AND p.balance_after < 0))""",
    "house accounts keep their balance in shards, not in place": """
        SELECT p.id FROM postings p JOIN accounts a ON a.id = p.account_id
        WHERE a.allow_negative AND p.balance_after IS NOT NULL""",
    "every reversal mirrors the transaction it reverses": """
        SELECT r.id FROM transactions r
        JOIN postings rp ON rp.transaction_id = r.id
        WHERE r.reverses_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM postings op WHERE op.transaction_id = r.reverses_id
            AND op.account_id = rp.account_id AND op.amount = -rp.amount)""",
    "every holds account holds exactly its asset's open holds": """
        SELECT a.id, a.asset_code, a.balance + COALESCE(s.total, 0) AS balance,
               COALESCE(h.total, 0) AS open_holds
        FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(balance) AS total FROM balance_shards
                   GROUP BY account_id) s ON s.account_id = a.id
        LEFT JOIN (SELECT asset_code, SUM(amount) AS total FROM holds WHERE status = 'open'
                   GROUP BY asset_code) h ON h.asset_code = a.asset_code
        WHERE a.kind = 'holds' AND a.balance + COALESCE(s.total, 0) <> COALESCE(h.total, 0)""",
}

ROLLUP_CHECK = "the overview's rolled-up daily volumes equal the transactions they sum"

COUNTS = {
    "transactions": "SELECT COUNT(*) FROM transactions",
    "postings": "SELECT COUNT(*) FROM postings",
    "accounts": "SELECT COUNT(*) FROM accounts",
}


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, list[tuple]] = field(default_factory=dict)
    passed: list[str] = field(default_factory=list)
    chains: list[chain.ChainCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not any(check.problem for check in self.chains)

    def lines(self) -> list[str]:
        out = [", ".join(f"{n:,} {name}" for name, n in self.counts.items())]
        out += [f"ok    {name}" for name in self.passed]
        for name, rows in self.failures.items():
            out.append(f"FAIL  {name}: {len(rows)} offending row(s), e.g. {rows[:5]}")
        out += [_chain_line(check) for check in self.chains]
        unsealed = [f"{check.unsealed:,} {check.chain}" for check in self.chains if check.unsealed]
        if unsealed:
            out.append(f"note  not sealed yet (flask --app wsgi ledger seal): "
                       f"{', '.join(unsealed)}")
        out.append("ledger verified" if self.ok else "LEDGER INCONSISTENT")
        return out


def _chain_line(check: chain.ChainCheck) -> str:
    if check.problem:
        return f"FAIL  chain {check.chain}: {check.problem}"
    return (f"ok    chain {check.chain}: {check.entries:,} entries recompute from their rows "
            f"to the head, seq {check.head.seq} {check.head.hash}")


def verify() -> Report:
    report = Report()
    with db.engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":  # one snapshot for every check
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        report.counts = {name: conn.execute(text(sql)).scalar_one() for name, sql in COUNTS.items()}
        for name, sql in CHECKS.items():
            rows = [tuple(row) for row in conn.execute(text(sql))]
            if rows:
                report.failures[name] = rows
            else:
                report.passed.append(name)
        rolled = rollups.mismatches(conn)
        if rolled:
            report.failures[ROLLUP_CHECK] = rolled
        else:
            report.passed.append(ROLLUP_CHECK)
        report.chains = [chain.check(conn, name) for name in CHAINS]
    return report
