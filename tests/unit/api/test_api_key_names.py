"""``API_KEYS=ops-alice:<key>`` names who holds a key; the name is what pages and history
show, never the key."""

from __future__ import annotations

import pytest

from worker.api.settings import ApiSettings, hash_key, split_named

KEY = "k" * 24


@pytest.mark.parametrize(
    ("entry", "name", "rest"),
    [
        (f"ops-alice:{KEY}", "ops-alice", KEY),
        (KEY, None, KEY),
        ("sha256:" + "a" * 64, None, "sha256:" + "a" * 64),
        ("ci.bot_1:sha256:" + "b" * 64, "ci.bot_1", "sha256:" + "b" * 64),
        ("1abc:" + KEY, None, "1abc:" + KEY),  # a name starts with a letter
    ],
)
def test_split_named(entry: str, name: str | None, rest: str) -> None:
    assert split_named(entry) == (name, rest)


def test_named_keys_match_by_their_key_and_show_their_name() -> None:
    settings = ApiSettings(_env_file=None,  # type: ignore[call-arg]
                           api_keys=f"ops-alice:{KEY},{'z' * 20}")
    matched = settings.match_api_key(KEY)
    assert matched == hash_key(KEY) and settings.key_name(matched) == "ops-alice"
    assert settings.match_api_key(f"ops-alice:{KEY}") is None  # the name is not the key
    other = settings.match_api_key("z" * 20)
    assert other is not None and settings.key_name(other) == f"key {other[:8]}"


def test_a_named_key_still_needs_16_characters() -> None:
    with pytest.raises(ValueError, match="shorter than 16"):
        ApiSettings(_env_file=None, api_keys="ops-alice:short")  # type: ignore[call-arg]
