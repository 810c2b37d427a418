"""The control protocol's framing and messages (pure: no sockets)."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymm.ctl import protocol as p

from tests.support.ctl import status_reply

EVERY_REQUEST = [
    p.StatusRequest(),
    p.ConfigRequest(),
    p.ConfigRequest(key="s1.entry_threshold"),
    p.SetRequest(settings={"s1.entry_threshold": "0.42", "risk.max_exposure_usd": "50"}),
    p.UnsetRequest(key="s1.entry_threshold"),
    p.ReloadRequest(),
    p.PauseRequest(),
    p.ResumeRequest(),
    p.CancelAllRequest(),
    p.FlattenRequest(),
    p.RestartRequest(),
    p.OrdersRequest(include_done=True),
    p.PositionsRequest(),
    p.FillsRequest(since=1_795_000_000.5, limit=10),
]


def payload_of(frame: bytes) -> bytes:
    (size,) = p.HEADER.unpack_from(frame)
    assert size == len(frame) - p.HEADER.size
    return frame[p.HEADER.size:]


def raw_payload(**fields) -> bytes:
    return msgspec.msgpack.encode(fields)


@pytest.mark.parametrize("request_", EVERY_REQUEST, ids=lambda r: type(r).__name__)
def test_every_request_survives_a_round_trip(request_):
    assert p.decode_request(payload_of(p.encode(request_))) == request_


def test_every_op_has_exactly_one_request_type():
    tags = {t.__struct_config__.tag for t in p.AnyRequest.__args__}
    assert tags == p.ALL_OPS
    assert p.MUTATING_OPS.isdisjoint(p.READ_ONLY_OPS)


def test_status_reply_with_orders_and_positions_survives_a_round_trip():
    reply = status_reply(warnings=["feed stale for 4.2 s"], blocked_legs={"up": "tick size changing"})
    assert p.decode_reply(payload_of(p.encode(reply))) == reply


def test_error_reply_round_trip_keeps_code_key_and_suggestion():
    err = p.ControlError(p.E_UNKNOWN_KEY, "unknown key 's1.entry'", key="s1.entry", suggestion="s1.entry_threshold")
    decoded = p.decode_reply(payload_of(p.encode(err.to_reply())))
    again = p.ControlError.from_reply(decoded)
    assert (again.code, again.key, again.suggestion, str(again)) == (
        p.E_UNKNOWN_KEY, "s1.entry", "s1.entry_threshold", "unknown key 's1.entry'")


def test_error_messages_cross_the_wire_as_one_line():
    err = p.ControlError(p.E_INTERNAL, "boom\n  Traceback (most recent call last):\n  x")
    assert "\n" not in err.to_reply().message


def test_garbage_payload_is_a_bad_frame_error():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(b"\xc1\xff garbage")
    assert caught.value.code == p.E_BAD_FRAME


def test_msgpack_that_is_not_a_map_is_a_bad_frame_error():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(msgspec.msgpack.encode([1, 2, 3]))
    assert caught.value.code == p.E_BAD_FRAME


def test_other_protocol_version_is_refused_with_both_versions_named():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(raw_payload(v=99, op="status"))
    assert caught.value.code == p.E_VERSION
    assert "99" in caught.value.message and str(p.PROTOCOL_VERSION) in caught.value.message


def test_missing_version_is_a_version_error_not_a_crash():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(raw_payload(op="status"))
    assert caught.value.code == p.E_VERSION


def test_unknown_op_names_the_known_ones():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(raw_payload(v=p.PROTOCOL_VERSION, op="launch_missiles"))
    assert caught.value.code == p.E_UNKNOWN_OP
    assert "launch_missiles" in caught.value.message and "status" in caught.value.message


def test_wrong_field_type_is_a_bad_frame_naming_the_field():
    with pytest.raises(p.ControlError) as caught:
        p.decode_request(raw_payload(v=p.PROTOCOL_VERSION, op="set", settings={"a": 1}))
    assert caught.value.code == p.E_BAD_FRAME
    assert "settings" in caught.value.message


def test_forbidden_reply_carries_the_group_to_join():
    reply = p.decode_reply(payload_of(p.encode(p.ErrorReply(code=p.E_FORBIDDEN, message="no", group="polymm"))))
    assert isinstance(reply, p.ErrorReply) and reply.group == "polymm"


def test_an_error_reply_without_a_group_still_decodes():
    """What an older trader sends: no `group` field."""
    reply = p.decode_reply(raw_payload(v=p.PROTOCOL_VERSION, kind="error", code=p.E_FORBIDDEN, message="join group x"))
    assert isinstance(reply, p.ErrorReply) and reply.group is None and reply.message == "join group x"


def test_an_order_without_age_distance_or_reason_decodes_with_them_unknown():
    fields = dict(client_id="c-1", order_id=None, strategy="s1", leg="up", side="BUY", price=0.6, size=5.0,
                  filled=0.0, state="live", role="entry", order_type="GTC", post_only=True, created_at=1.0)
    payload = raw_payload(v=p.PROTOCOL_VERSION, kind="orders", orders=[fields])
    reply = p.decode_reply(payload)
    assert isinstance(reply, p.OrdersReply)
    (order,) = reply.orders
    assert (order.age_s, order.distance, order.reason) == (None, None, "")
    with_none = raw_payload(v=p.PROTOCOL_VERSION, kind="orders", orders=[{**fields, "reason": None}])
    assert p.decode_reply(with_none).orders[0].reason is None


def test_done_reply_paused_is_unknown_unless_the_trader_says():
    assert p.decode_reply(raw_payload(v=p.PROTOCOL_VERSION, kind="done", message="ok")).paused is None
    reply = p.decode_reply(payload_of(p.encode(p.DoneReply(message="flattening", paused=True))))
    assert reply.paused is True


def test_reply_of_another_version_raises_version_mismatch():
    with pytest.raises(p.VersionMismatch):
        p.decode_reply(raw_payload(v=2, kind="status", state="running", healthy=True))


def test_error_reply_of_another_version_is_still_readable():
    reply = p.decode_reply(raw_payload(v=7, kind="error", code="version", message="speak v7"))
    assert isinstance(reply, p.ErrorReply) and reply.message == "speak v7"


def test_encoding_refuses_a_message_above_the_frame_limit():
    with pytest.raises(p.FrameTooLarge):
        p.encode(p.SetRequest(settings={"k": "x" * (p.MAX_FRAME + 1)}))


def test_frame_reader_rejects_an_oversized_length_prefix_before_the_body_arrives():
    reader = p.FrameReader(max_frame=1000)
    with pytest.raises(p.FrameTooLarge):
        reader.feed(p.HEADER.pack(1001))


def test_frame_reader_keeps_a_partial_frame_until_it_completes():
    frame = p.encode(p.StatusRequest())
    reader = p.FrameReader()
    assert reader.feed(frame[:3]) == []
    assert reader.feed(frame[3:-1]) == []
    assert reader.pending == len(frame) - 1
    assert reader.feed(frame[-1:]) == [payload_of(frame)]
    assert reader.pending == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(EVERY_REQUEST), min_size=1, max_size=8), st.data())
def test_frame_reader_splits_any_chunking_of_a_stream_into_the_same_messages(requests, data):
    stream = b"".join(p.encode(r) for r in requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = p.FrameReader()
    payloads = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        payloads += reader.feed(stream[start:end])
    assert [p.decode_request(x) for x in payloads] == requests


@pytest.mark.parametrize("key", ["pk", "PK", "auth.api_secret", "POLY_API_SECRET", "POLY_PASSPHRASE", "poly_api_key",
                                 "gateway.private_key", "db.password"])
def test_secret_keys_are_recognised(key):
    assert p.is_secret_key(key)
    assert p.redact(key, "0xdeadbeef") == p.REDACTED


@pytest.mark.parametrize("key", ["s1.entry_threshold", "market.up_token", "endpoints.clob_url", "risk.max_exposure_usd"])
def test_ordinary_keys_are_not_redacted(key):
    assert not p.is_secret_key(key)
    assert p.redact(key, 0.42) == 0.42
