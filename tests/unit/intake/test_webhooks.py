"""Standard Webhooks verification against vectors computed here with hmac/hashlib/base64,
independently of the library under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from worker.api.settings import ApiSettings, hash_key
from worker.intake.webhooks import WebhookVerificationError, WebhookVerifier

# A fixed secret, as Standard Webhooks writes them: whsec_ + base64 of the key bytes.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + base64.b64encode(b"an older secret, rotated out!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's secret bytes").decode()
BODY = b'{"type":"employee.offboarded","data":{"person":{"email":"jane@acme.com"}}}'


def signature(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(webhook_id: str, timestamp: int | str, sig: str) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sig}


def test_the_published_example_vector_verifies() -> None:
    # The Standard Webhooks reference example (spec repo): id, timestamp, body, secret and
    # signature as published; our own HMAC must produce the same signature.
    webhook_id, stamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(SECRET, webhook_id, stamp, body) == expected


def test_valid_signature_is_accepted() -> None:
    now = int(time.time())
    delivery = WebhookVerifier([SECRET]).verify(
        BODY, headers("msg_1", now, signature(SECRET, "msg_1", now, BODY))
    )
    assert (delivery.webhook_id, delivery.timestamp) == ("msg_1", now)


def test_header_names_are_case_insensitive() -> None:
    now = int(time.time())
    sig = signature(SECRET, "msg_1", now, BODY)
    upper = {k.title(): v for k, v in headers("msg_1", now, sig).items()}
    assert WebhookVerifier([SECRET]).verify(BODY, upper).webhook_id == "msg_1"


def test_wrong_secret_is_rejected() -> None:
    now = int(time.time())
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        WebhookVerifier([SECRET]).verify(
            BODY, headers("msg_1", now, signature(OTHER_SECRET, "msg_1", now, BODY))
        )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 1)}, b),
    ],
    ids=["other id", "other body", "other timestamp"],
)
def test_any_change_to_the_signed_content_is_rejected(tamper: object) -> None:
    now = int(time.time())
    good = headers("msg_1", now, signature(SECRET, "msg_1", now, BODY))
    bad_headers, bad_body = tamper(good, BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier([SECRET]).verify(bad_body, bad_headers)


def test_rotation_any_configured_secret_may_match() -> None:
    now = int(time.time())
    verifier = WebhookVerifier([SECRET, OLD_SECRET])
    for secret in (SECRET, OLD_SECRET):
        sig = signature(secret, "msg_1", now, BODY)
        assert verifier.verify(BODY, headers("msg_1", now, sig)).webhook_id == "msg_1"


def test_rotation_sender_sends_several_signatures() -> None:
    now = int(time.time())
    both = " ".join(
        [signature(OLD_SECRET, "msg_1", now, BODY), signature(SECRET, "msg_1", now, BODY)]
    )
    assert WebhookVerifier([SECRET]).verify(BODY, headers("msg_1", now, both))
    only_other = signature(OTHER_SECRET, "msg_1", now, BODY)
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier([SECRET]).verify(BODY, headers("msg_1", now, only_other))


def test_junk_entries_beside_a_valid_signature_do_not_hide_it() -> None:
    now = int(time.time())
    sig = signature(SECRET, "msg_1", now, BODY)
    header = f"v1 v2,abc v1,!!!notbase64 v1,a,b {sig}"
    assert WebhookVerifier([SECRET]).verify(BODY, headers("msg_1", now, header))


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_stale_or_future_timestamps_are_rejected(age: int) -> None:
    stamp = int(time.time()) - age
    sig = signature(SECRET, "msg_1", stamp, BODY)  # correctly signed, but out of tolerance
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        WebhookVerifier([SECRET]).verify(BODY, headers("msg_1", stamp, sig))


def test_timestamp_inside_tolerance_is_accepted() -> None:
    stamp = int(time.time()) - 240
    sig = signature(SECRET, "msg_1", stamp, BODY)
    assert WebhookVerifier([SECRET]).verify(BODY, headers("msg_1", stamp, sig))


def test_replayed_delivery_still_verifies_here() -> None:
    """The verifier is stateless: replays are stopped by the API's webhook-id idempotency
    (see tests/integration/test_api_events.py), not by signature checks."""
    now = int(time.time())
    h = headers("msg_1", now, signature(SECRET, "msg_1", now, BODY))
    verifier = WebhookVerifier([SECRET])
    assert verifier.verify(BODY, h) == verifier.verify(BODY, h)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "1"},
        {"webhook-id": "msg_1", "webhook-timestamp": "12x", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1e9", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "now", "webhook-signature": "v1,AAAA"},
    ],
)
def test_missing_or_malformed_headers_are_rejected(bad: dict[str, str]) -> None:
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier([SECRET]).verify(BODY, bad)


def test_non_utf8_body_is_rejected_not_crashed() -> None:
    now = int(time.time())
    body = b"\xff\xfe{}"
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier([SECRET]).verify(
            body, headers("msg_1", now, signature(SECRET, "msg_1", now, body))
        )


def test_no_secrets_configured_matches_nothing() -> None:
    now = int(time.time())
    verifier = WebhookVerifier([])
    assert not verifier.configured
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY, headers("msg_1", now, signature(SECRET, "msg_1", now, BODY)))


def test_settings_split_comma_separated_values() -> None:
    api = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        webhook_secrets=f" {SECRET} , {OLD_SECRET}",  # type: ignore[arg-type]
        api_keys="first-key-0123456789,sha256:" + hash_key("second-key-0123456789"),  # type: ignore[arg-type]
    )
    assert [s.get_secret_value() for s in api.webhook_secrets] == [SECRET, OLD_SECRET]
    assert api.api_key_hashes == (
        hash_key("first-key-0123456789"), hash_key("second-key-0123456789")
    )
    assert api.match_api_key("second-key-0123456789") == hash_key("second-key-0123456789")
    assert api.match_api_key("wrong-key-0123456789") is None
    assert "first-key" not in repr(api)


def test_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRETS", f"{SECRET},{OLD_SECRET}")
    monkeypatch.setenv("API_KEYS", "env-key-0123456789abc")
    api = ApiSettings(_env_file=None)  # type: ignore[call-arg]
    assert len(api.webhook_secrets) == 2
    assert api.match_api_key("env-key-0123456789abc") is not None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("webhook_secrets", "not-a-whsec", "whsec_"),
        ("webhook_secrets", f"{SECRET},not-a-whsec", "entry 2"),
        ("webhook_secrets", "whsec_!!!", "base64"),
        ("webhook_secrets", "whsec_c2hvcnQ=", "shorter"),
        ("api_keys", "tiny-k3y", "shorter"),
        ("api_keys", "sha256:abc", "64 hex"),
    ],
)
def test_settings_reject_bad_values_without_echoing_them(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        ApiSettings(_env_file=None, **{field: value})  # type: ignore[call-arg, arg-type]
    for part in value.split(","):
        assert part not in str(caught.value)
