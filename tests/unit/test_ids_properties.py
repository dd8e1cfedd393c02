"""Properties of identifiers: shapes, creation-time order, and the one user-id length rule."""

import uuid
from unittest import mock

from hypothesis import example, given
from hypothesis import strategies as st

from opencues import ids

ALPHABET = set(ids._PUSH_ALPHABET)
# Milliseconds that 8 base-64 digits hold: about 8,900 years after 1970.
PUSH_MS = st.integers(0, 64**8 - 1)


def _segment_id_at(ms: int) -> str:
    with mock.patch("opencues.ids.time.time_ns", return_value=ms * 1_000_000):
        return ids.segment_id()


@given(PUSH_MS)
def test_segment_ids_are_twenty_url_safe_characters(ms):
    made = _segment_id_at(ms)
    assert len(made) == 20 and set(made) <= ALPHABET


@given(PUSH_MS, PUSH_MS)
@example(63, 64)
@example(0, 64**8 - 1)
def test_segment_ids_sort_by_creation_time(first, second):
    a, b = _segment_id_at(first), _segment_id_at(second)
    if first < second:
        assert a[:8] < b[:8] and a < b
    elif first == second:
        assert a[:8] == b[:8]


@given(st.text(alphabet=st.characters(codec=None), max_size=1100))
@example("a" * 1024)
@example("a" * 1025)
@example("é" * 512)
@example("é" * 513)
@example("\U0001F600" * 256)
@example("\U0001F600" * 256 + "a")
@example("\ud800" * 342)  # lone surrogates: 3 bytes each with surrogatepass
def test_user_id_too_long_is_exactly_the_byte_rule(user_id):
    assert ids.user_id_too_long(user_id) == (len(user_id.encode("utf-8", "surrogatepass")) > ids.MAX_USER_ID_BYTES)


@given(st.integers(0, 4000), st.sampled_from(["a", "é", "\u20ac", "\U0001F600"]))
def test_user_id_too_long_at_every_length(count, char):
    user_id = char * count
    assert ids.user_id_too_long(user_id) == (len(user_id.encode()) > ids.MAX_USER_ID_BYTES)


def test_random_ids_have_their_shapes():
    for _ in range(200):
        assert uuid.UUID(ids.job_id()).version == 4
        assert uuid.UUID(ids.api_key_id()).version == 4
        secret = ids.api_secret()
        assert len(secret) == 43 and set(secret) <= ALPHABET
        assert 10_000 <= int(ids.account_id()) < 100_000
