"""What the property-based tests throw at the service, and how they read the money afterwards."""
import base64

from hypothesis import strategies as st
from sqlalchemy import text

from wallet_web.extensions import db


def _cursor(text_value: str) -> str:
    return base64.urlsafe_b64encode(text_value.encode()).decode().rstrip("=")


NASTY_TEXT = [
    "", " ", "\x00", "a\x00b", "\r\n", "\t", "\x1b[31m", "%00", "\u202e", "\ufeff", "\U0001F4A9",
    "²", "①", "１２", "١٢", "-1", "0", "00", "+1", " 1", "1_000", "1e3", "1.5", "NaN", "inf",
    str(2**63), str(2**63 - 1), str(-(2**63)), "9" * 400, "x" * 5000,
    "'", '"', "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "//evil.example",
    "////evil.example", "/\\evil.example", "javascript:alert(1)", "https://evil.example/",
    "=1+1", "＝1+1", "ＧＯＬＤ", "gold", "GOLD", "DIAMOND", "topup", "reversal", "genesis",
    "2025-01-01", "2025-01-01T00:00", "20250101", "0.5", "9999-12-31T23:59", "0001-01-01T00:00",
    "2025-01-01T00:00:00+99:00", "true", "on", "admin", "write", "null", "[]", "{}",
    _cursor("id:99999999999999999999"), _cursor("id:-1"), _cursor("id:²"), _cursor("id:0"),
    _cursor("x" * 300), "!!!", "====",
]

text_values = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=40),
    st.integers().map(str),
)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.sampled_from(NASTY_TEXT), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)

# Names that must never reach url_for or a view's keyword arguments.
ROUTING_NAMES = ["_method", "endpoint", "_external", "_anchor", "_scheme", "user_id", "tx_id",
                 "values", "method"]


def money() -> tuple:
    """Balances, shards, and how many transactions and postings exist."""
    db.session.rollback()
    rows = [
        db.session.execute(text(sql)).all() for sql in (
            "SELECT id, balance, status FROM accounts ORDER BY id",
            "SELECT account_id, shard, balance FROM balance_shards ORDER BY 1, 2",
            "SELECT COUNT(*) FROM transactions UNION ALL SELECT COUNT(*) FROM postings",
        )
    ]
    return tuple(tuple(tuple(row) for row in part) for part in rows)
