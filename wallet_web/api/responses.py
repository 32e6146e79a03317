"""JSON responses from the pydantic models, and the replay header of idempotent writes."""
from flask import Response
from pydantic import BaseModel

from ..ledger import Receipt


def json_response(model: BaseModel, status: int = 200, headers: dict | None = None) -> Response:
    return Response(model.model_dump_json(), status=status, headers=headers,
                    mimetype="application/json")


def receipt_response(model: BaseModel, receipt: Receipt, posted: int = 201) -> Response:
    """`posted` (201) for a new movement; 200 with Idempotent-Replayed for the stored one."""
    if receipt.replayed:
        return json_response(model, 200, {"Idempotent-Replayed": "true"})
    return json_response(model, posted)


def wallet_balance_after(receipt: Receipt) -> int:
    """The wallet's balance after a user movement: its leg is the only one that records one
    (house accounts are sharded and record none)."""
    return next(leg.balance_after for leg in receipt.postings if leg.balance_after is not None)
