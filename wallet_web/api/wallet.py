"""Seed-compatible wallet endpoints: clients of the original service work unchanged apart
from sending an API key. `total_balance` is the GOLD wallet, the original single-currency
meaning; `accounts` lists one wallet per currency. A movement answers 200 with
`"status": "success"` as the original did, a replay too (with `Idempotent-Replayed: true`).
Field names map to v1's as: currency -> asset, type -> kind."""
from flask import Blueprint

from .. import ledger, queries
from ..api_keys import current_actor
from .errors import attach
from .openapi import api_route
from .responses import json_response, receipt_response, wallet_balance_after
from .schemas import MovementRequest, MovementResponse, WalletAccount, WalletBalance

bp = attach(Blueprint("wallet_api", __name__, url_prefix="/wallet"))
TOTAL_CURRENCY = "GOLD"
MOVEMENT = dict(scope="write", body=MovementRequest, response=MovementResponse, status=200,
                replayable=True, errors=(404, 409, 423))


@api_route(bp, "/<id:user_id>/balance", summary="A user's wallets and GOLD total",
           response=WalletBalance)
def balance(user_id: int):
    wallets = [row for row in queries.user_balances(user_id) if row.kind == "wallet"]
    gold = next((row for row in wallets if row.asset_code == TOTAL_CURRENCY), None)
    available, held = (gold.balance, gold.held) if gold else (0, 0)
    accounts = [WalletAccount(id=row.id, name=row.name, currency=row.asset_code,
                              balance=row.balance + row.held, available=row.balance,
                              held=row.held) for row in wallets]
    return json_response(WalletBalance(user_id=user_id, total_balance=available + held,
                                       available_balance=available, held_balance=held,
                                       accounts=accounts))


@api_route(bp, "/topup", "POST", summary="Credit a wallet from the treasury", **MOVEMENT)
def topup(body: MovementRequest):
    return _movement(ledger.topup, body)


@api_route(bp, "/bonus", "POST", summary="Credit a wallet from promotions", **MOVEMENT)
def bonus(body: MovementRequest):
    return _movement(ledger.bonus, body)


@api_route(bp, "/spend", "POST", summary="Debit a wallet to revenue", **MOVEMENT)
def spend(body: MovementRequest):
    return _movement(ledger.spend, body)


def _movement(flow, body: MovementRequest):
    receipt = flow(body.user_id, body.currency, body.amount, body.reference_id,
                   description=body.description, actor=current_actor())
    result = MovementResponse.model_construct(  # the ledger's own values: nothing to validate
        id=receipt.id, reference_id=receipt.reference_id, type=receipt.kind,
        created_at=receipt.created_at, balance=wallet_balance_after(receipt))
    return receipt_response(result, receipt, posted=200)
