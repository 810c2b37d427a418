"""polymm/ws.py ReadAhead: websocket-client's frame reader fed from one socket read per chunk. Every channel's
recorded frames (market, RTDS, user) come out byte for byte and still decode, whatever the TCP segmentation;
pings are answered; a receive timeout in the middle of a frame and the server's close lose nothing."""
from __future__ import annotations

import json
import random
import socket
import struct
import threading
from pathlib import Path

import pytest
import websocket

from polymm.feed.rtds.wire import Decoder as RtdsDecoder
from polymm.feed.wire import FrameDecoder
from polymm.trader.venue.user_wire import decode_user_frame
from polymm.ws import ReadAhead

RECORDED = Path(__file__).resolve().parents[1] / "fixtures/polymarket-recorded"
MARKET = ["nautilus-python/ws_messages/book.json", "nautilus-python/ws_messages/price_change_v2.json",
          "nautilus-python/ws_messages/tick_size_change.json", "nautilus-rust/test_data/ws_market_book_msg.json"]
RTDS = ["nautilus-rust/test_data/rtds_crypto_prices_update.json"]
USER = ["nautilus-python/ws_messages/user_trade1.json", "nautilus-python/ws_messages/order_placement.json",
        "nautilus-python/ws_messages/order_cancel.json"]


def compact(path: str) -> bytes:
    return json.dumps(json.loads((RECORDED / path).read_text()), separators=(",", ":")).encode()


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A server frame (unmasked), 7-, 16- or 64-bit length."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack(">Q", n)
    return head + payload


def client(sock: socket.socket, read_ahead: bool = True, size: int = 65536) -> websocket.WebSocket:
    ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
    ws.sock = sock
    ws.connected = True
    if read_ahead:
        assert ReadAhead.attach(ws, size)
    return ws


def send_in_pieces(sock: socket.socket, data: bytes, rng: random.Random) -> threading.Thread:
    """Send `data` cut at random places (1 byte to 3 kB), so frames straddle socket reads every which way."""

    def run():
        i = 0
        while i < len(data):
            step = rng.choice((1, 2, 3, 7, 64, 500, 3000))
            sock.sendall(data[i:i + step])
            i += step

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("size", [65536, 5])  # the default, and a read smaller than a frame header
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_channels_recorded_frames_come_out_whole_and_still_decode(size, seed):
    market, rtds, user = [compact(p) for p in MARKET], [compact(p) for p in RTDS], [compact(p) for p in USER]
    big = json.dumps([json.loads(market[0])] * 40, separators=(",", ":")).encode()  # > 64 kB: a 64-bit length
    assert len(big) > 65536
    payloads = market + rtds + user + [b"PONG", big] + market
    server, sock = socket.socketpair()
    sender = send_in_pieces(server, b"".join(frame(p) for p in payloads), random.Random(seed))
    ws = client(sock, size=size)
    ws.settimeout(5)
    got = [ws.recv_data()[1] for _ in payloads]
    sender.join()
    assert got == payloads
    decode = FrameDecoder().decode
    assert [type(e).__name__ for p in got[:4] for e in decode(p)][:3] == ["Book", "PriceChange", "TickSizeChange"]
    assert RtdsDecoder().decode(got[4])[0].price == 61035.86
    events, problems = decode_user_frame(got[5])
    assert events and not problems
    server.close()
    sock.close()


def test_a_ping_is_answered_and_a_close_ends_the_stream():
    server, sock = socket.socketpair()
    ws = client(sock)
    ws.settimeout(5)
    server.sendall(frame(b"hello", 0x9) + frame(b'{"a":1}') + frame(struct.pack(">H", 1000), 0x8))
    assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b'{"a":1}')
    server.settimeout(5)
    pong = server.recv(64)
    assert pong[0] & 0x0F == 0xA  # the library answered the ping (a masked client frame)
    opcode, _data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    server.close()
    sock.close()


def test_a_timeout_in_the_middle_of_a_frame_loses_nothing():
    payload = compact(MARKET[1])
    data = frame(payload)
    server, sock = socket.socketpair()
    ws = client(sock)
    ws.settimeout(0.05)
    server.sendall(data[:1])  # half a header
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_data()
    server.sendall(data[1:40])
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_data()
    server.sendall(data[40:] + data)
    assert ws.recv_data()[1] == payload and ws.recv_data()[1] == payload
    server.close()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv_data()
    sock.close()


def test_an_unexpected_library_shape_is_left_alone():
    class Other:
        pass

    assert ReadAhead.attach(Other()) is False
