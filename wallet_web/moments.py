"""How a moment is written wherever it leaves the app as text (CSV, events, the hash chain):
ISO 8601 in UTC with microseconds and a Z."""
from datetime import datetime


def moment(value: datetime) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")
