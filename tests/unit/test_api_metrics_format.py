"""Pure parts of the metrics: histogram assembly and label hygiene."""

from __future__ import annotations

from worker.metrics import LATENCY_BUCKETS, _histogram, _label, queue_keys


def test_histogram_buckets_are_cumulative_and_end_with_count() -> None:
    # Non-cumulative storage: one observation in bucket 0, two in bucket 3, one in +Inf.
    raw = {"DELETE|b0": "1", "DELETE|b3": "2", f"DELETE|b{len(LATENCY_BUCKETS)}": "1",
           "DELETE|sum": "42.5", "DELETE|count": "4"}
    family = _histogram(raw)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "0.01")] == 1
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "0.1")] == 3
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "30.0")] == 3
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "+Inf")] == 4
    assert samples[("seat_revoker_polar_request_duration_seconds_count", None)] == 4
    assert samples[("seat_revoker_polar_request_duration_seconds_sum", None)] == 42.5


def test_labels_cannot_break_the_field_format() -> None:
    assert _label("GET|x\ny") == "GET_x y"
    assert _label("") == "unknown"


def test_queue_keys_follow_kombu_global_prefix_and_priorities() -> None:
    assert queue_keys("ns", "ns") == ["ns:ns", "ns:ns\x06\x163", "ns:ns\x06\x166", "ns:ns\x06\x169"]
