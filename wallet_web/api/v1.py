"""Versioned API: users, accounts, postings, transactions, reversal, point-in-time balance,
the CSV audit trail and the OpenAPI document. Lists are keyset pages: pass `next_cursor` back
as `cursor` to continue; pages stay stable while new rows arrive."""
from datetime import datetime, timezone

from flask import Blueprint, Response, jsonify, stream_with_context

from .. import exports, ledger, queries
from ..api_keys import current_actor
from .errors import attach
from .openapi import api_route, document
from .responses import json_response, receipt_response
from .schemas import (
    AccountBalanceOut, AccountOut, BalanceAt, BalanceAtQuery, LegOut, PageQuery, PostingOut,
    PostingPage, ReversalRequest, ReversalResponse, TransactionFilter, TransactionOut,
    TransactionPage, TransactionQuery, UserDetail, UserList, UserOut, UserSearch,
)

bp = attach(Blueprint("api_v1", __name__, url_prefix="/api/v1"))
FILTER_FIELDS = set(TransactionFilter.model_fields)


@api_route(bp, "/openapi.json", summary="This document (public)", scope=None)
def openapi_json():
    return jsonify(document())


@api_route(bp, "/users", summary="Find users by id, or username/email prefix",
           query=UserSearch, response=UserList)
def find_users(query: UserSearch):
    users = queries.find_users(query.q, query.limit)
    return json_response(UserList(items=[UserOut.model_validate(user) for user in users]))


@api_route(bp, "/users/<id:user_id>", summary="A user with its accounts and balances",
           response=UserDetail)
def user(user_id: int):
    found = queries.get_user(user_id)
    accounts = [AccountBalanceOut.model_validate(row) for row in queries.user_balances(user_id)]
    return json_response(UserDetail(**UserOut.model_validate(found).model_dump(), accounts=accounts))


@api_route(bp, "/accounts/<id:account_id>", summary="An account and its exact balance",
           response=AccountOut)
def account(account_id: int):
    found = queries.get_account(account_id)
    fields = {name: getattr(found, name) for name in AccountOut.model_fields if name != "balance"}
    return json_response(AccountOut(**fields, balance=queries.account_balance(account_id)))


@api_route(bp, "/accounts/<id:account_id>/postings", summary="Postings, newest first",
           query=PageQuery, response=PostingPage, errors=(400,))
def account_postings(account_id: int, query: PageQuery):
    page = queries.account_postings(account_id, query.cursor, query.limit)
    items = [PostingOut.model_validate(row) for row in page.items]
    return json_response(PostingPage(items=items, next_cursor=page.next_cursor))


@api_route(bp, "/accounts/<id:account_id>/balance", summary="Balance at a point in time",
           query=BalanceAtQuery, response=BalanceAt)
def balance_at(account_id: int, query: BalanceAtQuery):
    if query.at is None:
        at, balance = datetime.now(timezone.utc), queries.account_balance(account_id)
    else:
        at, balance = query.at, queries.balance_at(account_id, query.at)
    return json_response(BalanceAt(account_id=account_id, at=at, balance=balance))


@api_route(bp, "/transactions", summary="Transactions, newest first, filtered",
           query=TransactionQuery, response=TransactionPage, errors=(400,))
def transactions(query: TransactionQuery):
    page = queries.list_transactions(_filters(query), query.cursor, query.limit)
    return json_response(TransactionPage(items=[_transaction(tx) for tx in page.items],
                                         next_cursor=page.next_cursor))


@api_route(bp, "/transactions/<id:tx_id>", summary="A transaction with its postings",
           response=TransactionOut)
def transaction(tx_id: int):
    return json_response(_transaction(queries.get_transaction(tx_id)))


@api_route(bp, "/transactions/<id:tx_id>/reversal", "POST", summary="Reverse a transaction",
           scope="write", body=ReversalRequest, response=ReversalResponse, status=201,
           replayable=True, errors=(404, 409, 423))
def reverse(tx_id: int, body: ReversalRequest):
    receipt = ledger.reverse(tx_id, body.reference_id, description=body.description,
                             actor=current_actor())
    result = ReversalResponse(id=receipt.id, reference_id=receipt.reference_id,
                              reverses_id=tx_id, created_at=receipt.created_at)
    return receipt_response(result, receipt)


@api_route(bp, "/transactions.csv", summary="Audit trail as CSV, one row per posting (streamed)",
           query=TransactionFilter, media_type="text/csv")
def transactions_csv(query: TransactionFilter):
    rows = stream_with_context(exports.audit_csv(_filters(query)))
    return Response(rows, mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=transactions.csv"})


def _filters(query: TransactionFilter) -> queries.TransactionFilters:
    return queries.TransactionFilters(**query.model_dump(include=FILTER_FIELDS))


def _transaction(tx) -> TransactionOut:
    legs = [LegOut(account_id=p.account_id, user_id=p.account.user_id, asset_code=p.account.asset_code,
                   amount=p.amount, balance_after=p.balance_after) for p in tx.postings]
    return TransactionOut(id=tx.id, kind=tx.kind, reference_id=tx.reference_id,
                          description=tx.description, actor=tx.actor, api_key_id=tx.api_key_id,
                          operator_id=tx.operator_id, reverses_id=tx.reverses_id,
                          created_at=tx.created_at, postings=legs)
