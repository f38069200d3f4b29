"""MLflow registry webhooks: signature check. Pure: no I/O.

MLflow signs `"{delivery_id}.{timestamp}.{body}"` with HMAC-SHA256 and sends
`X-MLflow-Signature: v1,<base64 digest>`, with the id and timestamp in their own headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

MAX_SKEW_SECONDS = 300


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
