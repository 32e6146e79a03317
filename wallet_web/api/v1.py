"""Versioned API: users and their lifecycle, assets, accounts, postings, transactions
(movements, transfers, reversal), point-in-time balance, the CSV audit trail, the audit events
of people and the OpenAPI document. One vocabulary: `asset`, `kind`, `amount`. Lists are
keyset pages: pass `next_cursor` back as `cursor` to continue; pages stay stable while new rows
arrive."""
from dataclasses import asdict
from datetime import datetime, timezone

from flask import Blueprint, Response, jsonify, stream_with_context, url_for

from .. import accounts, errors, exports, ledger, queries, replica
from ..assets import list_assets
from ..api_keys import current_actor
from .errors import attach
from .openapi import api_route, document
from .responses import json_response, receipt_response
from .schemas import (
    AccountBalanceOut, AccountOut, AssetList, AssetOut, AuditEventFilter, AuditEventOut,
    AuditEventPage, AuditEventQuery, BalanceAt, BalanceAtQuery, ExportFilter, ExportManifest,
    PageQuery, PostingOut, PostingPage, ReversalRequest, ReversalResponse, StatusChangeOut,
    StatusChangeRequest, TransactionFilter, TransactionOut, TransactionPage, TransactionQuery,
    TransactionRequest, UserCreate, UserDetail, UserOut, UserPage, UserQuery, transaction_out,
)

bp = attach(Blueprint("api_v1", __name__, url_prefix="/api/v1"))
FILTER_FIELDS = set(TransactionFilter.model_fields)
AUDIT_FILTER_FIELDS = set(AuditEventFilter.model_fields)


@api_route(bp, "/openapi.json", summary="This document (public)", scope=None)
def openapi_json():
    return jsonify(document())


@api_route(bp, "/users", summary="Users, newest first, by status and id/name/email/external_id",
           query=UserQuery, response=UserPage, errors=(400,))
@replica.reads
def list_users(query: UserQuery):
    page = queries.list_users(query.q, query.status, query.cursor, query.limit)
    return json_response(UserPage(items=[UserOut.model_validate(user) for user in page.items],
                                  next_cursor=page.next_cursor))


@api_route(bp, "/users", "POST", summary="Create a user with one wallet per asset (idempotent)",
           scope="write", body=UserCreate, response=UserDetail, status=201, replayable=True,
           errors=(409,))
def create_user(body: UserCreate):
    registered = accounts.register_user(body.username, body.email, body.external_id)
    response = _user_detail(registered.user_id, 201 if registered.created else 200)
    if not registered.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@api_route(bp, "/users/<id:user_id>", summary="A user with its accounts, balances and status "
           "history", response=UserDetail)
def user(user_id: int):
    return _user_detail(user_id)


@api_route(bp, "/users/by-external-id/<external_id>", summary="A user by your own id",
           response=UserDetail)
def user_by_external_id(external_id: str):
    if not accounts.EXTERNAL_ID.fullmatch(external_id):  # no such id, and a NUL never reaches SQL
        raise errors.UnknownUser(f"no user has external_id {external_id!r}",
                                 external_id=external_id)
    return _user_detail(queries.user_by_external_id(external_id).id)


def _status_route(action: str, summary: str):
    def change(user_id: int, body: StatusChangeRequest):
        accounts.change_status(user_id, action, body.reason, actor=current_actor())
        return _user_detail(user_id)

    change.__name__ = change.__qualname__ = action
    return api_route(bp, f"/users/<id:user_id>/{action}", "POST", summary=summary,
                     scope="write", body=StatusChangeRequest, response=UserDetail,
                     errors=(404, 409))(change)


freeze = _status_route("freeze", "Freeze: debits refused (423), credits still land")
unfreeze = _status_route("unfreeze", "Unfreeze a frozen user")
close = _status_route("close", "Close: refuses every movement; balances must be zero (409)")


def _user_detail(user_id: int, status: int = 200):
    found = queries.get_user(user_id)
    balances = [AccountBalanceOut.model_validate(row) for row in queries.user_balances(user_id)]
    changes = [StatusChangeOut.model_validate(row) for row in queries.status_changes(user_id)]
    detail = UserDetail(**UserOut.model_validate(found).model_dump(), accounts=balances,
                        status_changes=changes)
    return json_response(detail, status)


@api_route(bp, "/assets", summary="Assets: code, name, decimals to show, limits",
           response=AssetList)
def assets():
    return json_response(AssetList(items=[AssetOut.model_validate(a) for a in list_assets()]))


@api_route(bp, "/accounts/<id:account_id>", summary="An account and its exact balance",
           response=AccountOut)
def account(account_id: int):
    found = queries.get_account(account_id)
    fields = {name: getattr(found, name) for name in AccountOut.model_fields
              if name not in ("asset", "balance", "available", "held")}  # .asset: the Asset row
    available, held = queries.wallet_available_and_held(account_id)
    if found.allow_negative:
        available = queries.account_balance(account_id)
    return json_response(AccountOut(**fields, asset=found.asset_code, balance=available,
                                    available=available, held=held))


@api_route(bp, "/accounts/<id:account_id>/postings", summary="Postings, newest first",
           query=PageQuery, response=PostingPage, errors=(400,))
@replica.reads
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
@replica.reads
def transactions(query: TransactionQuery):
    page = queries.list_transactions(_filters(query), query.cursor, query.limit)
    return json_response(TransactionPage(items=[transaction_out(tx) for tx in page.items],
                                         next_cursor=page.next_cursor))


@api_route(bp, "/transactions", "POST", summary="Post a movement: topup, bonus, spend, transfer",
           scope="write", body=TransactionRequest, response=TransactionOut, status=201,
           replayable=True, errors=(404, 409, 423))
def create_transaction(body: TransactionRequest):
    options = dict(description=body.description, metadata=body.metadata, actor=current_actor())
    ledger.check_counterparty(body.kind, body.user_id, body.to_user_id)
    if body.kind == "transfer":
        receipt = ledger.transfer(body.user_id, body.to_user_id, body.asset, body.amount,
                                  body.reference_id, **options)
    else:
        receipt = ledger.move(body.kind, body.user_id, body.asset, body.amount,
                              body.reference_id, **options)
    return receipt_response(transaction_out(queries.get_transaction(receipt.id)), receipt)


@api_route(bp, "/transactions/<id:tx_id>", summary="A transaction with its postings",
           response=TransactionOut)
def transaction(tx_id: int):
    return json_response(transaction_out(queries.get_transaction(tx_id)))


@api_route(bp, "/transactions/<id:tx_id>/reversal", "POST", summary="Reverse a transaction",
           scope="write", body=ReversalRequest, response=ReversalResponse, status=201,
           replayable=True, errors=(404, 409, 423))
def reverse(tx_id: int, body: ReversalRequest):
    receipt = ledger.reverse(tx_id, body.reference_id, description=body.description,
                             actor=current_actor())
    result = ReversalResponse(id=receipt.id, reference_id=receipt.reference_id,
                              reverses_id=tx_id, created_at=receipt.created_at)
    return receipt_response(result, receipt)


@api_route(bp, "/transactions.csv", summary="Audit trail as CSV, one row per posting, in "
           "ledger chain order with each entry's seq and hashes (streamed)",
           query=ExportFilter, media_type="text/csv")
def transactions_csv(query: ExportFilter):
    filters = _filters(query)
    exports.record_download("transactions.csv", **asdict(filters), through_seq=query.through_seq)
    rows = stream_with_context(exports.audit_csv(filters, query.through_seq))
    name = exports.ledger_filename(filters)
    return Response(rows, mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@api_route(bp, "/transactions.manifest.json", summary="The manifest of the CSV for the same "
           "filters: seq span, counts, sha256 of its bytes, chain hashes at both ends "
           "(verify offline with python -m wallet_web.verify_export)",
           query=ExportFilter, response=ExportManifest)
def transactions_manifest(query: ExportFilter):
    filters = _filters(query)
    exports.record_download("transactions.manifest.json", **asdict(filters),
                            through_seq=query.through_seq)
    manifest = exports.ledger_manifest(filters, query.through_seq)
    csv_url = url_for(".transactions_csv", **manifest["filters"],
                      through_seq=manifest["through_seq"])
    return json_response(ExportManifest(**manifest, csv_url=csv_url))


@api_route(bp, "/audit-events", summary="What operators, keys and commands did or tried, "
           "newest first, filtered", query=AuditEventQuery, response=AuditEventPage,
           errors=(400,))
@replica.reads
def audit_events(query: AuditEventQuery):
    filters = queries.AuditFilters(**query.model_dump(include=AUDIT_FILTER_FIELDS))
    page = queries.list_audit_events(filters, query.cursor, query.limit)
    return json_response(AuditEventPage(
        items=[AuditEventOut.model_validate(event) for event in page.items],
        next_cursor=page.next_cursor))


def _filters(query: TransactionFilter) -> queries.TransactionFilters:
    return queries.TransactionFilters(**query.model_dump(include=FILTER_FIELDS))
