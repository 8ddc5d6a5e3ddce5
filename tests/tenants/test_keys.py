"""tenants/keys.py: the key format mc_<8-char prefix>_<43-char secret>, its hash, prefix and check."""

from __future__ import annotations

import hashlib
import re

import pytest

from tenants.keys import hash_key, make_key, parse_prefix, verify

KEY_FORMAT = re.compile(r"mc_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")


def test_it_makes_keys_in_the_documented_format():
    key, prefix, key_hash = make_key()
    match = KEY_FORMAT.fullmatch(key)
    assert match, key
    assert match.group(1) == prefix


def test_it_returns_the_sha256_of_the_whole_key_as_the_hash_to_store():
    key, _, key_hash = make_key()
    assert key_hash == hashlib.sha256(key.encode()).hexdigest() == hash_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash)


def test_it_never_makes_the_same_key_or_prefix_twice_in_a_row():
    made = [make_key() for _ in range(200)]
    assert len({key for key, _, _ in made}) == 200
    assert len({prefix for _, prefix, _ in made}) == 200  # 36^8 prefixes: a repeat here means no randomness


def test_it_parses_the_prefix_of_its_own_keys():
    key, prefix, _ = make_key()
    assert parse_prefix(key) == prefix


def test_it_reads_the_prefix_even_when_the_secret_holds_underscores():
    assert parse_prefix("mc_abcd1234_se_cr_et") == "abcd1234"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "mc_",
        "mc_abcd1234",  # no secret
        "mc_abcd1234_",  # empty secret
        "xx_abcd1234_secret",  # not our start
        "MC_abcd1234_secret",
        "mc_ABCD1234_secret",  # prefixes are lower case
        "mc_abc-1234_secret",
        "mc_abcd123_secret",  # 7-char prefix
        "mc_abcd12345_secret",  # 9-char prefix
        "mc_abcdé234_secret",
        "Bearer mc_abcd1234_secret",
        " mc_abcd1234_secret",
    ],
)
def test_it_finds_no_prefix_in_a_malformed_key(key):
    assert parse_prefix(key) is None


def test_it_verifies_the_right_key_against_its_hash():
    key, _, key_hash = make_key()
    assert verify(key, key_hash) is True


def test_it_rejects_a_key_that_differs_in_one_character():
    key, _, key_hash = make_key()
    last = "A" if key[-1] != "A" else "B"
    assert verify(key[:-1] + last, key_hash) is False
    assert verify(key + "x", key_hash) is False
    assert verify(key[:-1], key_hash) is False


def test_it_rejects_another_keys_hash_with_the_same_prefix():
    key, prefix, _ = make_key()
    forged = f"mc_{prefix}_{'a' * 43}"
    assert verify(forged, hash_key(key)) is False


def test_it_rejects_against_a_hash_that_is_not_a_sha256():
    key, _, _ = make_key()
    assert verify(key, "") is False
    assert verify(key, "0" * 64) is False
    assert verify(key, hash_key(key)[:-1]) is False


def test_it_hashes_any_text_a_client_can_send_without_raising():
    # A lone surrogate cannot be UTF-8 encoded strictly; a header can still carry one after decoding.
    for text in ["", "é", "\ud800", "\x00", "x" * 10_000]:
        assert re.fullmatch(r"[0-9a-f]{64}", hash_key(text))
        assert verify(text, "0" * 64) is False
