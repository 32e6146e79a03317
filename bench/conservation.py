"""API-level conservation: each user's balance moved by exactly the sum of its successful
(posted) requests, top-up and bonus adding, spend taking away."""
from __future__ import annotations


def expected_moves(moves: dict[str, int], unknown: list[dict], committed: set[str]) -> dict[int, int]:
    """Per user: the postings, plus the requests whose answer was lost but the ledger holds."""
    expected = {int(user): delta for user, delta in moves.items()}
    for call in unknown:
        if call["reference_id"] in committed:
            expected[call["user_id"]] = expected.get(call["user_id"], 0) + call["delta"]
    return expected


def mismatches(before: dict[int, int], after: dict[int, int],
               expected: dict[int, int]) -> list[dict]:
    """Users whose balance did not move by what their requests say, with both figures."""
    users = before.keys() | after.keys() | expected.keys()
    found = []
    for user in sorted(users):
        moved = after.get(user, 0) - before.get(user, 0)
        if moved != expected.get(user, 0):
            found.append({"user_id": user, "moved": moved, "expected": expected.get(user, 0)})
    return found
