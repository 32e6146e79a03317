"""POST /api/v1/transactions/batch: up to 1,000 movements in one request (batch.py)."""
from pydantic import ValidationError

from .. import batch, errors, queries
from ..api_keys import current_actor
from ..inputs import allow_large_body
from .errors import from_validation
from .openapi import api_route
from .responses import json_response
from .schemas import (
    BatchCounts, BatchItemOut, BatchRequest, BatchResponse, ErrorDetail, LegOut,
    TransactionOut, TransactionRequest,
)
from .v1 import bp

PATH = "/transactions/batch"
allow_large_body(bp.url_prefix + PATH, "MAX_BATCH_BODY")


@api_route(bp, PATH, "POST", scope="write", body=BatchRequest, response=BatchResponse,
           summary="Post up to 1,000 movements at once, each idempotent by its reference_id",
           errors=(422,))
def post_batch(body: BatchRequest):
    items = [_item(raw) for raw in body.items]
    outcomes = batch.post_many(items, actor=current_actor(), atomic=body.atomic)
    owners = queries.account_owners({leg.account_id for outcome in outcomes if outcome.receipt
                                     for leg in outcome.receipt.postings})
    actor = current_actor()
    counts = batch.counts(outcomes)
    refused = body.atomic and counts["refused"] > 0
    answer = BatchResponse(
        error=ErrorDetail(**_refused(counts).to_dict()) if refused else None,
        atomic=body.atomic, counts=BatchCounts(**counts),
        items=[_item_out(item, outcome, actor, owners) for item, outcome in zip(items, outcomes)])
    return json_response(answer, 422 if refused else 200)


def _refused(counts: dict) -> errors.BatchRefused:
    return errors.BatchRefused(f"nothing was posted: {counts['refused']} item(s) of this atomic "
                               "batch were refused (see items)", refused=counts["refused"])


def _item(raw: dict) -> batch.Item:
    try:
        request = TransactionRequest.model_validate(raw)
    except ValidationError as error:
        return from_validation(error)
    return batch.Item(request.kind, request.user_id, request.asset, request.amount,
                      request.reference_id, request.to_user_id, request.description,
                      request.metadata)


def _item_out(item, outcome: batch.Outcome, actor, owners: dict) -> BatchItemOut:
    """Built without validation (model_construct): every value comes from the ledger's own
    receipt, and a batch answers up to a thousand of these."""
    if outcome.error is not None:
        return BatchItemOut.model_construct(status=outcome.status, transaction=None,
                                            error=ErrorDetail(**outcome.error.to_dict()))
    receipt = outcome.receipt
    legs = [LegOut.model_construct(account_id=leg.account_id, user_id=owners[leg.account_id][0],
                                   asset=owners[leg.account_id][1], amount=leg.amount,
                                   balance_after=leg.balance_after) for leg in receipt.postings]
    transaction = TransactionOut.model_construct(
        id=receipt.id, kind=receipt.kind, reference_id=receipt.reference_id,
        description=receipt.description, actor=actor.label, api_key_id=actor.api_key_id,
        operator_id=actor.operator_id, reverses_id=None, metadata=item.metadata,
        reason_code=None, ticket=None, checker=None, created_at=receipt.created_at,
        postings=legs)
    return BatchItemOut.model_construct(status=outcome.status, transaction=transaction,
                                        error=None)
