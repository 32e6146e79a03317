"""A daily-reward run as an integrator writes it: the standard library only, one bonus per
player, posted in batches, each player's reference fixed by the day, so that running the
script again after a crash rewards nobody twice.

    WALLET_TOKEN=wk_... python batch_client.py BASE_URL PLAYERS_FILE REFERENCE_PREFIX

PLAYERS_FILE holds one user id a line. Prints one JSON line per batch, as soon as it is
answered: {"batch": n, "http": 200, "counts": {...}, "statuses": [201, 200, ...]}, and
{"done": true} at the end. Exits 1 on an answer it does not expect.
"""
import json
import os
import sys
import urllib.error
import urllib.request

BATCH = 500
AMOUNT = 10
HANG_GUARD_SECONDS = 120  # a socket timeout only a hung server reaches


def post_batch(base: str, token: str, items: list[dict]) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/api/v1/transactions/batch", method="POST",
        data=json.dumps({"items": items}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def reward(player: int, prefix: str) -> dict:
    return {"kind": "bonus", "user_id": player, "asset": "GOLD", "amount": AMOUNT,
            "reference_id": f"{prefix}{player}", "description": "daily reward"}


def main(base: str, players_file: str, prefix: str) -> int:
    token = os.environ["WALLET_TOKEN"]
    with open(players_file) as lines:
        players = [int(line) for line in lines if line.strip()]
    for number, first in enumerate(range(0, len(players), BATCH)):
        items = [reward(player, prefix) for player in players[first:first + BATCH]]
        status, answer = post_batch(base, token, items)
        if status != 200:
            print(json.dumps({"batch": number, "http": status, "answer": answer}), flush=True)
            return 1
        print(json.dumps({"batch": number, "http": status, "counts": answer["counts"],
                          "statuses": [item["status"] for item in answer["items"]]}), flush=True)
    print(json.dumps({"done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
