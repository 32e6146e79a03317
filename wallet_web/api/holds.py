"""Holds over /api/v1: place, capture, void, read and list (two-phase movements, holds.py)."""
from .. import holds, queries, replica
from ..api_keys import current_actor
from ..models import utcnow
from .openapi import api_route
from .responses import json_response
from .schemas import (
    CaptureRequest, HoldDetail, HoldOut, HoldPage, HoldQuery, HoldRequest, VoidRequest,
)
from .v1 import bp

STEP = dict(scope="write", response=HoldDetail, status=201, replayable=True,
            errors=(404, 409, 423))


@api_route(bp, "/holds", "POST", summary="Hold an amount of a wallet (authorize)",
           body=HoldRequest, **STEP)
def place_hold(body: HoldRequest):
    step = holds.place(body.user_id, body.asset, body.amount, body.reference_id,
                       expires_in_seconds=body.expires_in_seconds, description=body.description,
                       metadata=body.metadata, actor=current_actor())
    return _step_response(step)


@api_route(bp, "/holds/<id:hold_id>/capture", "POST", body=CaptureRequest,
           summary="Capture all or part of an open hold; the rest goes back", **STEP)
def capture_hold(hold_id: int, body: CaptureRequest):
    step = holds.capture(hold_id, body.reference_id, body.amount, description=body.description,
                         actor=current_actor())
    return _step_response(step)


@api_route(bp, "/holds/<id:hold_id>/void", "POST", body=VoidRequest,
           summary="Release an open hold back to the wallet", **STEP)
def void_hold(hold_id: int, body: VoidRequest):
    step = holds.void(hold_id, body.reference_id, description=body.description,
                      actor=current_actor())
    return _step_response(step)


@api_route(bp, "/holds/<id:hold_id>", summary="A hold, with the wallet's available and held",
           response=HoldDetail)
def hold(hold_id: int):
    return json_response(_detail(queries.get_hold(hold_id)))


@api_route(bp, "/holds", summary="Holds, newest first, by user, status and asset",
           query=HoldQuery, response=HoldPage, errors=(400,))
@replica.reads
def list_holds(query: HoldQuery):
    page = queries.list_holds(query.user_id, query.status, query.asset, query.cursor, query.limit)
    return json_response(HoldPage(items=[HoldOut.model_validate(row) for row in page.items],
                                  next_cursor=page.next_cursor))


def _step_response(step: holds.Step):
    status, headers = (200, {"Idempotent-Replayed": "true"}) if step.replayed else (201, None)
    return json_response(_detail(queries.HoldRow.of(step.hold, utcnow())), status, headers)


def _detail(row) -> HoldDetail:
    available, held = queries.wallet_available_and_held(row.account_id)
    return HoldDetail(**HoldOut.model_validate(row).model_dump(), available=available, held=held)
