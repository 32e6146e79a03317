"""The route registry: one decorator authenticates, validates and records each API route, and
the OpenAPI 3.1 document is built from those records and the pydantic schemas, so the contract
cannot drift from what the views accept.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

from flask import Blueprint, current_app, request, url_for
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ..api_keys import check_scope
from ..limits import BIGINT_MAX
from ..errors import MalformedJson, UnsupportedContentType
from .errors import from_validation
from .schemas import ErrorResponse

REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
ERROR_TEXT = {
    400: "malformed JSON (or a repeated key), or an invalid cursor",
    401: "no API key, or an invalid or revoked one (`WWW-Authenticate: Bearer`)",
    403: "the key lacks the needed scope",
    404: "no such user, account, transaction or hold",
    409: "conflict: `already_reversed`, `reference_taken` (the reference_id belongs to "
         "another caller), `user_exists`, `user_closed`, `balance_not_zero`, and a hold that "
         "is no longer open: `hold_captured`, `hold_voided`, `hold_expired`",
    413: "body larger than the limit",
    415: "body is not `application/json`",
    422: "validation error (`field`, `reason`), or a refused movement (`insufficient_funds`, "
         "`amount_too_large`, `balance_limit`, `idempotency_key_reused`, "
         "`capture_exceeds_hold`, ...)",
    423: "account frozen (`account_frozen`: debits refused, credits land) or closed "
         "(`account_closed`: everything refused)",
}
REPLAYED = {"Idempotent-Replayed": {"description": "`true` when this is the stored result "
                                    "of an earlier request with the same reference_id",
                                    "schema": {"type": "string", "enum": ["true"]}}}


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    endpoint: str
    summary: str
    scope: str | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    replayable: bool = False
    tags: tuple[str, ...] = field(default=())


OPERATIONS: list[Operation] = []


def api_route(blueprint: Blueprint, rule: str, method: str = "GET", *, summary: str,
              scope: str | None = "read", body=None, query=None, **documented):
    """Registers a view that receives `body=` and/or `query=` as validated models."""
    def decorate(view):
        @functools.wraps(view)
        def endpoint(**path):
            if scope:
                check_scope(scope)
            try:
                if body is not None:
                    path["body"] = parse_body(body)
                if query is not None:
                    path["query"] = query.model_validate(request.args.to_dict())
            except ValidationError as error:  # the request's fault; one in a response is ours
                raise from_validation(error) from None
            return view(**path)

        blueprint.add_url_rule(rule, view_func=endpoint, methods=[method])
        OPERATIONS.append(Operation(
            blueprint.url_prefix + rule, method, f"{blueprint.name}.{view.__name__}", summary,
            scope, body, query, tags=(blueprint.name,), **documented))
        return endpoint
    return decorate


def parse_body(model: type[BaseModel]) -> BaseModel:
    if not request.is_json:
        raise UnsupportedContentType("send the body as application/json",
                                     content_type=request.mimetype)
    body = request.get_data(cache=False)
    _refuse_what_pydantic_forgives(body)
    return model.model_validate_json(body)


def _refuse_what_pydantic_forgives(body: bytes) -> None:
    """pydantic keeps the last of repeated keys, so {"amount": 1, "amount": 1000000} would move
    the second amount; and it reads NaN and Infinity, which are not JSON (a 422 for a body that
    is a 400). The stdlib's C parser finds both for a few microseconds; a body it cannot read is
    left to pydantic, whose error says why."""
    try:  # decoded here: faster than json's own encoding detection, and pydantic wants UTF-8
        json.loads(body.decode(), object_pairs_hook=_unique_keys, parse_constant=_not_json)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return


def _not_json(constant: str):
    raise MalformedJson(f"the body is not valid JSON: {constant} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    unique = dict(pairs)
    if len(unique) != len(pairs):
        key = _first_repeat(pairs)
        raise MalformedJson(f"the body repeats the key {key!r}; send each key once", key=key)
    return unique


def _first_repeat(pairs: list[tuple[str, object]]) -> str | None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


# ---------------------------------------------------------------- the document


def document() -> dict:
    cached = current_app.extensions.get("openapi_document")
    if cached is None:
        cached = current_app.extensions["openapi_document"] = build_document(OPERATIONS)
    return cached


def build_document(operations: list[Operation]) -> dict:
    refs, schemas = _component_schemas(operations)
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(_openapi_path(op.path), {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Wallet API", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "an API key: wk_..."}},
        },
    }


def _component_schemas(operations):
    wanted = {(ErrorResponse, "serialization")}
    for op in operations:
        if op.body:
            wanted.add((op.body, "validation"))
        if op.response:
            wanted.add((op.response, "serialization"))
    refs, defs = models_json_schema(sorted(wanted, key=lambda item: item[0].__name__),
                                    ref_template=REF)
    return refs, defs.get("$defs", {})


def _openapi_path(rule: str) -> str:
    return PATH_PARAM.sub(lambda match: "{" + match.group(2) + "}", rule)


def _operation(op: Operation, refs) -> dict:
    spec = {
        "operationId": op.endpoint.replace(".", "_"),
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": _path_parameters(op.path) + _query_parameters(op.query),
        "responses": _responses(op, refs),
        "security": [{"bearerAuth": []}] if op.scope else [],
    }
    if op.scope:
        spec["description"] = f"Needs a key with scope `{op.scope}`."
    if op.body:
        spec["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(op.body, "validation")]}}}
    return spec


def _path_parameters(rule: str) -> list[dict]:
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
             if converter == "id" else {"type": "string"}}
            for converter, name in PATH_PARAM.findall(rule)]


def _query_parameters(model: type[BaseModel] | None) -> list[dict]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "description": prop.get("description", ""), "schema": _not_null(prop)}
            for name, prop in schema["properties"].items()]


def _not_null(prop: dict) -> dict:
    """An optional query parameter is absent, never null: keep only its non-null schema."""
    options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
    if len(options) != 1:
        return prop
    rest = {key: value for key, value in prop.items() if key not in ("anyOf", "default")}
    return {**rest, **options[0]}


def _responses(op: Operation, refs) -> dict:
    content = ({"schema": refs[(op.response, "serialization")]} if op.response
               else {"schema": {"type": "string"} if op.media_type != "application/json"
                     else {"type": "object"}})
    success = {"description": "OK" if op.status == 200 else "Created",
               "content": {op.media_type: content}}
    responses = {str(op.status): success}
    if op.replayable:
        replay = ("replay: the stored result of the first request with this reference_id "
                  "and body")
        responses["200"] = {"description": f"OK, or a {replay}" if op.status == 200 else replay,
                            "headers": REPLAYED, "content": {op.media_type: content}}
    error_ref = {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}}
    for status in sorted(_error_statuses(op)):
        responses[str(status)] = {"description": ERROR_TEXT.get(status, "error"), "content": error_ref}
    return responses


def _error_statuses(op: Operation) -> set[int]:
    statuses = set(op.errors)
    if op.scope:
        statuses |= {401, 403}
    if op.body:
        statuses |= {400, 413, 415, 422}
    if op.query:
        statuses.add(422)
    if PATH_PARAM.search(op.path):
        statuses.add(404)
    return statuses


DESCRIPTION = """\
JSON API of the wallet service. Every route except this document needs
`Authorization: Bearer <key>` (create one with `flask --app wsgi api-keys create NAME --scope write`).
Errors have one shape: `{"error": {"code": "...", "message": "...", ...}}`.
Movements are idempotent by `reference_id`: the same request again returns `200` with the
identical body and `Idempotent-Replayed: true`; the same reference_id with another body is
`422 idempotency_key_reused`. A frozen account is `423 account_frozen`.
"""


# ---------------------------------------------------------------- the docs page


docs = Blueprint("api_docs", __name__, url_prefix="/api")


@docs.get("/docs")
def docs_page():
    # Rendered without the app's context processors: this page needs no operator session.
    return current_app.jinja_env.get_template("api/docs.html").render(url_for=url_for)
