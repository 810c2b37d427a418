"""Timings and limits of the execution core (trader/execution/core.py and its parts)."""
from __future__ import annotations

import re

_TICK_RULE = re.compile(r"minimum tick size rule:\s*([0-9]*\.?[0-9]+)")
MAX_QUEUED_EVENTS = 10_000
CANCEL_RESEND_EVERY_S = 1.0
# Retention is counted in windows, so that memory is bounded per window whatever the window's length (issue 27):
# a day and an hour of 15-minute windows, as before, and the same number of a soak's 20-second windows.
KEEP_DONE_ORDERS_WINDOWS = 4  # done orders stay this many windows (mmctl orders --all): an hour at 15 minutes
TRACK_AFTER_END_WINDOWS = 4  # an ended market is still followed (user channel, reconciliation) this many windows
# A market whose window ended this many windows ago, with no working order and nothing left to settle (resolved,
# or flat), is folded into a P&L summary and its fills, orders and journal entries are dropped: memory and
# the per-decision positions() cost stay bounded over weeks of 15-minute windows. mmctl fills shows a day.
FORGET_MARKET_AFTER_WINDOWS = 96
SETTLED = "(settled markets)"  # pnl(): the one bucket forgotten markets are folded into (bounded, not per market)
PRUNE_EVERY_S = 60.0
VERSION_PROBE_EVERY_S = 30.0  # GET /version while blocked on an order version we cannot sign
FEE_RETRY_EVERY_S = 30.0  # GET /clob-markets again after a failed fee-schedule read
COMPACT_JOURNAL_EVERY_S = 6 * 3600.0
RESTART_RETRY_S = 5.0
DEAD_MAN_SWITCH_OFF = ("dead-man switch disabled (risk.heartbeat=false): if the trader dies its orders stay on "
                       "the exchange")
GTD_MIN_LIFETIME_S = 180  # the exchange refuses GTD expirations closer than 3 minutes...
GTD_EARLY_EXPIRY_S = 60  # ...and expires GTD orders 60 s before their stated expiration,
GTD_CLOCK_MARGIN_S = 5  # so expiration = window_end + 60 dies at the close; GTD impossible in the last ~2 min
