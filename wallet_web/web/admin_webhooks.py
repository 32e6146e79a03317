"""Admin: webhook endpoints (register one, its secret shown once; disable, enable) and each
endpoint's recent deliveries, any of which can be sent again. Routes of the admin blueprint,
so the admin role and the login are checked by admin.py's guards; every change is audited by
webhooks.py, which makes it."""
from __future__ import annotations

from flask import flash, redirect, request, url_for

from .. import errors, webhooks
from .admin import bp
from .admin_forms import WebhookForm
from .rendering import render

BACK_TO_ENDPOINT = "endpoint"  # a toggle's `back` value: return to the endpoint's own page


@bp.route("/webhooks")
def webhooks_page():
    return _webhooks(WebhookForm(formdata=None))


def _webhooks(form: WebhookForm, status: int = 200, created: tuple | None = None):
    body, code = render("admin/webhooks.html", form=form, endpoints=webhooks.list_endpoints(),
                        created=created, status=status)
    # The page may hold a secret's only display: keep it out of every cache.
    return body, code, {"Cache-Control": "no-store"}


@bp.route("/webhooks", methods=["POST"])
def create_webhook():
    form = WebhookForm()
    if not form.validate_on_submit():
        return _webhooks(form, 422)
    try:
        created = webhooks.create_endpoint(form.url.data, form.event_types.data,
                                           description=form.description.data)
    except errors.InvalidWebhook as error:
        _show(form, error)
        return _webhooks(form, 422)
    return _webhooks(WebhookForm(formdata=None), 201, created=created)


def _show(form: WebhookForm, error: errors.InvalidWebhook) -> None:
    """The service's refusal next to the field it names, as a sentence: without the field's
    name the API's message starts with (`url: must start with http://...`)."""
    name = error.details.get("field") or ""
    text = error.message.removeprefix(f"{name}: ")
    sentence = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    (form[name].errors if name in form else form.form_errors).append(sentence)


@bp.route("/webhooks/<id:endpoint_id>")
def webhook_page(endpoint_id: int):
    return render("admin/webhook.html", endpoint=webhooks.get_endpoint(endpoint_id),
                  deliveries=webhooks.recent_deliveries(endpoint_id))


@bp.route("/webhooks/<id:endpoint_id>/<any(disable, enable):change>", methods=["POST"])
def set_webhook_active(endpoint_id: int, change: str):
    webhooks.set_active(endpoint_id, change == "enable")
    flash(f"Webhook endpoint #{endpoint_id} {change}d.")
    if request.form.get("back") == BACK_TO_ENDPOINT:
        return redirect(url_for("admin.webhook_page", endpoint_id=endpoint_id), 303)
    return redirect(url_for("admin.webhooks_page"), 303)


@bp.route("/webhooks/<id:endpoint_id>/deliveries/<id:delivery_id>/redeliver", methods=["POST"])
def redeliver_webhook(endpoint_id: int, delivery_id: int):
    webhooks.get_endpoint(endpoint_id)  # the page it returns to exists: else a 404, unchanged
    webhooks.redeliver(delivery_id, endpoint_id=endpoint_id)
    flash(f"Delivery #{delivery_id} will be sent again.")
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint_id), 303)
