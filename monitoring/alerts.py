"""Drift alerts: a Slack-compatible webhook on each change between ok, drift and degraded (model
quality past a `max_drop` of the monitor's label spec), signed and retried.

The body is Slack's incoming-webhook JSON (`text` plus `blocks`), so a Slack URL works as
is; other receivers read the same fields. Each delivery is signed with HMAC-SHA256 over
`"{timestamp}.{body}"` with the monitor's webhook secret:

    X-Atoll-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

A receiver recomputes `hex(HMAC_SHA256(secret, f"{t}.{raw_body}"))`, compares it in
constant time with `v1`, and refuses a `t` older than five minutes (`verify` below does
all three). A delivery is a durable job (`monitoring.alert`): a receiver that answers
non-2xx or cannot be reached is retried with the job queue's exponential backoff (2 s,
4 s, 8 s, ... up to `MAX_ATTEMPTS` tries); the signature is made afresh on each try.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx
from sqlalchemy.orm import Session

from atoll import jobs
from atoll.jobs import Job, RetryLater
from atoll.monitoring.models import Monitor, MonitorRun

log = logging.getLogger(__name__)

ALERT_JOB = "monitoring.alert"
SIGNATURE_HEADER = "X-Atoll-Signature"
MAX_ATTEMPTS = 8
MAX_SKEW_SECONDS = 300
TIMEOUT_SECONDS = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Atoll-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, *, header: str, body: bytes, now: float) -> str | None:
    """None when `header` signs `body` with `secret` and is fresh, else why it is refused."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts:
        return f"{SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex digest>"
    try:
        sent_at = int(parts["t"])
    except ValueError:
        return "the signature's timestamp is not a number"
    if abs(now - sent_at) > MAX_SKEW_SECONDS:
        return "the delivery is older than 5 minutes (replay?)"
    expected = sign(secret, sent_at, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, parts["v1"]):
        return "the signature does not match the shared secret"
    return None


def message(
    monitor: Monitor,
    run: MonitorRun,
    previous: str,
    current: str,
    columns: list[str],
    breaches: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The Slack-compatible body: a one-line `text`, `blocks` for Slack, and the facts as fields."""
    breaches = breaches or {}
    if current == "drift":
        headline = f":warning: Drift on endpoint {monitor.endpoint} (monitor {monitor.name})"
    elif current == "degraded":
        headline = f":warning: Model quality dropped on endpoint {monitor.endpoint} (monitor {monitor.name})"
    else:
        cleared = "Model quality recovered" if previous == "degraded" else "Drift cleared"
        headline = f":white_check_mark: {cleared} on endpoint {monitor.endpoint} (monitor {monitor.name})"
    share = f"{run.drift_share:.0%}" if run.drift_share is not None else "n/a"
    detail = (
        f"status {previous} → {current}; window {run.window_start:%Y-%m-%d %H:%M} to "
        f"{run.window_end:%Y-%m-%d %H:%M} UTC, {run.rows} rows; drifted share {share} "
        f"({run.alert_rule} rule)"
    )
    if columns:
        detail += "; drifted: " + ", ".join(columns[:20])
    if breaches:
        detail += "; quality below the reference: " + "; ".join(
            f"{group} {', '.join(metrics)}" for group, metrics in sorted(breaches.items())
        )
    return {
        "text": f"{headline}: {detail}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
        ],
        "atoll": {
            "monitor": monitor.name,
            "endpoint": monitor.endpoint,
            "run_id": run.id,
            "from": previous,
            "to": current,
            "window_start": run.window_start.isoformat(),
            "window_end": run.window_end.isoformat(),
            "drift_share": run.drift_share,
            "drifted_columns": columns,
            "quality": run.quality,
            "quality_breaches": breaches,
        },
    }


def queue(
    session: Session,
    monitor: Monitor,
    run: MonitorRun,
    previous: str,
    current: str,
    columns: list[str],
    breaches: dict[str, list[str]] | None = None,
) -> Job | None:
    """Queue the delivery in the run's transaction (once per run); None without a webhook."""
    if not monitor.webhook_url:
        return None
    body = message(monitor, run, previous, current, columns, breaches)
    return jobs.enqueue(
        session,
        kind=ALERT_JOB,
        payload={"monitor_id": monitor.id, "body": body},
        max_attempts=MAX_ATTEMPTS,
        dedupe_key=f"{ALERT_JOB}:{run.id}",
    )


def deliver(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """The alert job: POST the body, signed now; RetryLater on anything but 2xx."""
    monitor = session.get(Monitor, payload["monitor_id"])
    if monitor is None or not monitor.webhook_url:
        return {"skipped": "the monitor or its webhook was removed"}
    body = json.dumps(payload["body"], separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if monitor.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(monitor.webhook_secret, int(time.time()), body)
    try:
        response = httpx.post(monitor.webhook_url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise RetryLater(f"the receiver is unreachable: {type(exc).__name__}") from None
    if not response.is_success:
        raise RetryLater(f"the receiver answered {response.status_code}")
    log.info("drift alert delivered", extra={"monitor": monitor.name, "status": response.status_code})
    return {"delivered": response.status_code}
