"""MLflow registry webhooks: signature check and event parsing. Pure: no I/O.

MLflow signs `"{delivery_id}.{timestamp}.{body}"` with HMAC-SHA256 and sends
`X-MLflow-Signature: v1,<base64 digest>`, with the id and timestamp in their own headers.
What a delivery changes is applied by `sync.apply_webhook_event`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from atoll.errors import InvalidInput

MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class WebhookEvent:
    model_name: str  # "" when the event names no model
    created_version: int | None  # set for `model_version.created` only


def parse_event(body: bytes) -> WebhookEvent:
    """The model an (authentic) delivery names, and the version it created, if any."""
    try:
        event = json.loads(body or b"{}")
        data = event.get("data") or {}
        name = str(data.get("name", ""))
        created = event.get("entity") == "model_version" and event.get("action") == "created"
        version = int(data["version"]) if created and str(data.get("version", "")).isdigit() else None
    except (ValueError, AttributeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidInput("the webhook body is not MLflow's JSON event") from None
    return WebhookEvent(model_name=name, created_version=version)


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str, *, delivery_id: str, timestamp: str, body: bytes, signature: str, now: float
) -> str | None:
    """None when the delivery is authentic and fresh, else why it is refused."""
    if not (delivery_id and timestamp and signature):
        return "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "X-MLflow-Timestamp is not a number"
    if abs(now - sent_at) > MAX_SKEW_SECONDS:
        return "the delivery is older than 5 minutes (replay?)"
    expected = sign(secret, delivery_id, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "the signature does not match the shared secret"
    return None
