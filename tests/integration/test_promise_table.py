"""docs/promises.md names the test behind each promise: every name there must exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"(tests/[a-z0-9_/]+\.py)::(test_[A-Za-z0-9_]+)")


def test_every_test_the_promise_table_names_exists():
    table = (ROOT / "docs" / "promises.md").read_text()
    cited = set(CITED.findall(table))
    missing = sorted(f"{path}::{name}" for path, name in cited
                     if not (ROOT / path).is_file()
                     or not re.search(rf"^\s*(?:async )?def {name}\(", (ROOT / path).read_text(), re.M))
    assert len(cited) > 100
    assert missing == []
