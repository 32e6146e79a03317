"""GET /api/v1/events: the event feed, in order, from a cursor (events.py)."""
from .. import events
from .openapi import api_route
from .responses import json_response
from .schemas import EventPage, EventQuery
from .v1 import bp


@api_route(bp, "/events", summary="Events after a cursor, in order: none missed, none twice",
           query=EventQuery, response=EventPage, errors=(400,))
def list_events(query: EventQuery):
    page = events.feed(query.after, query.types, query.limit)
    return json_response(EventPage.model_validate(
        {"items": page.items, "next_cursor": page.next_cursor}))
