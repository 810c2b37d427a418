"""The shared wallet record's layout (store.py keeps it in /dev/shm): a header the leader writes, and one slot per
series of the catalogue (polymm/series.py; slot = the series' index) that only that series' trader writes.
Pure: struct packers and the records readers get.

Every multi-byte field is little-endian. Each slot starts with a sequence word (odd while its writer writes: a
seqlock, so a reader never sees a torn record); the header's heartbeat fields are written by one leader at a time
under the file lock. A new layout gets a new VERSION; a reader refuses one it does not know, in words.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"PMMWALLT"
VERSION = 1
SLOTS = 16  # the catalogue has 12 series; room for more without a new layout
SLOT_SIZE = 256
HEADER_SIZE = 128

# magic, version, slots, leader pid, heartbeat accepted at, failing since (0 = not failing), leader series, error
_HEADER = struct.Struct("<8sIIqdd16s64s")
# seq, pid, state, utc day (yyyymmdd), updated, exposure, open buys, window end, pnl today, cap, loss limit,
# own loss limit, dead since, reaped at, series, current condition id, previous condition id (raw 32 bytes each),
# cash moves. The last was added within the slot's spare bytes without a new VERSION: a record an older polymm
# created has zeros there, and an older trader's slot only keeps a counter that never changes (its series' moves are
# then not seen by the others' cash checks, trader/execution/cash.py: upgrade every trader together).
_SLOT = struct.Struct("<QqIIdddqdddddd16s32s32sQ")
assert _HEADER.size <= HEADER_SIZE and _SLOT.size <= SLOT_SIZE
SIZE = HEADER_SIZE + SLOTS * SLOT_SIZE

EMPTY, RUNNING, STOPPED = 0, 1, 2
STATES = {EMPTY: "empty", RUNNING: "running", STOPPED: "stopped"}


@dataclass(frozen=True)
class SeriesRecord:
    """What one series' trader last published."""

    series: str
    pid: int
    state: int  # RUNNING | STOPPED (a clean stop) | EMPTY
    updated: float  # unix s
    exposure_usd: float  # what its own risk counts: positions at the bid, open buys, unresolved at cost
    open_buys_usd: float  # the part of it in working buys (gone once cancelled)
    window_end: int  # the end of the window it last traded
    day: int  # the UTC day of pnl_today (yyyymmdd)
    pnl_today_usd: float  # its P&L that day: realised, payouts and open positions at the bid
    cap_usd: float  # its wallet.max_exposure_usd (the smallest in force wins)
    loss_limit_usd: float  # its wallet.max_daily_loss_usd
    own_loss_limit_usd: float  # its risk.max_daily_loss_usd
    condition_ids: tuple[str, ...] = ()  # its current and previous markets (the reaper cancels there)
    dead_since: float = 0.0  # the leader saw its trader gone (0: never)
    reaped_at: float = 0.0  # the leader cancelled its markets' orders
    cash_moves: int = 0  # cash moves its trader counted (its fills, their reversals, redemptions): cash.py


@dataclass(frozen=True)
class Heartbeat:
    leader_pid: int
    leader_series: str
    ok_at: float  # the leader's last accepted heartbeat, unix s (0: none yet)
    failing_since: float  # 0 while accepted
    error: str


def pack_header() -> bytes:
    return _HEADER.pack(MAGIC, VERSION, SLOTS, 0, 0.0, 0.0, b"", b"").ljust(HEADER_SIZE, b"\0")


def read_header(buf, offset: int = 0) -> tuple[bytes, int, int]:
    magic, version, slots, *_ = _HEADER.unpack_from(buf, offset)
    return magic, version, slots


def pack_heartbeat(buf, hb: Heartbeat) -> None:
    _HEADER.pack_into(buf, 0, MAGIC, VERSION, SLOTS, hb.leader_pid, hb.ok_at, hb.failing_since,
                      hb.leader_series.encode()[:16], hb.error.encode()[:64])


def unpack_heartbeat(buf) -> Heartbeat:
    _magic, _v, _s, pid, ok_at, failing, series, error = _HEADER.unpack_from(buf, 0)
    return Heartbeat(pid, _text(series), ok_at, failing, _text(error))


def slot_offset(index: int) -> int:
    if not 0 <= index < SLOTS:
        raise ValueError(f"slot {index} out of range (0..{SLOTS - 1})")
    return HEADER_SIZE + index * SLOT_SIZE


def pack_slot(buf, index: int, seq: int, rec: SeriesRecord) -> None:
    conds = [_cond_bytes(c) for c in rec.condition_ids[:2]] + [b""] * (2 - len(rec.condition_ids[:2]))
    _SLOT.pack_into(buf, slot_offset(index), seq, rec.pid, rec.state, rec.day, rec.updated, rec.exposure_usd,
                    rec.open_buys_usd, rec.window_end, rec.pnl_today_usd, rec.cap_usd, rec.loss_limit_usd,
                    rec.own_loss_limit_usd, rec.dead_since, rec.reaped_at, rec.series.encode()[:16], *conds,
                    rec.cash_moves)


def unpack_slot(buf, index: int) -> tuple[int, SeriesRecord]:
    (seq, pid, state, day, updated, exposure, open_buys, window_end, pnl, cap, loss, own_loss, dead_since, reaped_at,
     series, cond_a, cond_b, cash_moves) = _SLOT.unpack_from(buf, slot_offset(index))
    conds = tuple(c for c in (_cond_text(cond_a), _cond_text(cond_b)) if c)
    return seq, SeriesRecord(_text(series), pid, state, updated, exposure, open_buys, window_end, day, pnl, cap, loss,
                             own_loss, conds, dead_since, reaped_at, cash_moves)


def seq_of(buf, index: int) -> int:
    return struct.unpack_from("<Q", buf, slot_offset(index))[0]


def set_seq(buf, index: int, seq: int) -> None:
    struct.pack_into("<Q", buf, slot_offset(index), seq)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode(errors="replace")


def _cond_bytes(condition_id: str) -> bytes:
    """0x + 64 hex -> 32 bytes (the sim's and production's condition ids are both of this form)."""
    text = condition_id[2:] if condition_id.startswith("0x") else condition_id
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return b""
    return raw if len(raw) == 32 else b""


def _cond_text(raw: bytes) -> str:
    return "0x" + raw.hex() if raw.strip(b"\0") else ""
