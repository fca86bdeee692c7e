"""Standard Webhooks verification (https://www.standardwebhooks.com/) over several secrets.

The HMAC and the timestamp tolerance come from the ``standardwebhooks`` package; this module
adds what it leaves to the caller: trying each secret of a rotation list, turning the
library's other exceptions (a malformed signature entry, non-UTF-8 bodies) into one
``WebhookVerificationError``, and telling a stale timestamp apart from a bad signature so
the API can say which (both are answered 401). Replays inside the tolerance window are
caught by the caller's idempotency on ``webhook-id``, not here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as _LibraryError

TOLERANCE_SECONDS = 5 * 60  # the library's fixed window; checked here too for the message


class WebhookVerificationError(Exception):
    """The delivery is not authentic (or not fresh). ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedDelivery:
    webhook_id: str
    timestamp: int


class WebhookVerifier:
    """Verifies deliveries against every configured secret (rotation: any one may match)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._hooks = [Webhook(secret) for secret in secrets]
        self._keys = [_key_bytes(secret) for secret in secrets]

    @property
    def configured(self) -> bool:
        return bool(self._hooks)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedDelivery:
        """Check ``webhook-signature`` over ``{id}.{timestamp}.{body}``; raise if no secret
        produced any of the header's ``v1`` signatures or the timestamp is out of range."""
        webhook_id, stamp, entries = _checked_headers(headers)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError("body is not UTF-8") from None
        clean = {
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": " ".join(entries),
        }
        for hook in self._hooks:
            try:
                hook.verify(text, clean, json_parse=False)
            except _LibraryError:
                continue
            return VerifiedDelivery(webhook_id=webhook_id, timestamp=int(stamp))
        raise WebhookVerificationError("no signature matches a configured secret")

    def verify_bytes(self, body: bytes, headers: Mapping[str, str]) -> VerifiedDelivery:
        """``verify`` for a body that is not UTF-8 text (the library takes text only): the
        HMAC over the raw bytes, as Standard Webhooks signs them, so a caller can tell an
        authentic but undecodable body (for the sender to fix) from a forged one."""
        webhook_id, stamp, entries = _checked_headers(headers)
        given = [binascii.a2b_base64(entry.partition(",")[2].encode("ascii"))
                 for entry in entries]
        signed = f"{webhook_id}.{stamp}.".encode() + body
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return VerifiedDelivery(webhook_id=webhook_id, timestamp=int(stamp))
        raise WebhookVerificationError("no signature matches a configured secret")


def _checked_headers(headers: Mapping[str, str]) -> tuple[str, str, list[str]]:
    """``webhook-id``, ``webhook-timestamp`` and the well-formed ``v1`` signatures, or
    ``WebhookVerificationError`` when one is missing or the timestamp is not fresh."""
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signature = lowered.get("webhook-signature", "")
    if not (webhook_id and stamp and signature):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds")
    if abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("webhook-timestamp outside the 5-minute tolerance")
    # Entries the library cannot split or decode would raise ValueError inside it; keep
    # only well-formed ones so one junk entry cannot hide a valid signature beside it.
    entries = [e for e in signature.split(" ") if _well_formed(e)]
    if not entries:
        raise WebhookVerificationError("no v1 signature in webhook-signature")
    return webhook_id, stamp, entries


def _key_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret, decoded as the library decodes it."""
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


def _well_formed(entry: str) -> bool:
    version, sep, value = entry.partition(",")
    if not sep or version != "v1" or "," in value:
        return False
    try:
        binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True
