"""Builders for the ledger tests (tests/trader/ledger/): markets, orders and fills as the execution core hands them to the writer."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from html.parser import HTMLParser

import PIL.Image

from polymm.trader.model import FillView, Leg, MarketIdentity, OrderType, Role, Side


def market(start: int, window_s: int = 60, n: int = 0) -> MarketIdentity:
    return MarketIdentity(condition_id=f"0xcond{start}{n}", up_token=f"up{start}", down_token=f"down{start}",
                          window_start=start, window_end=start + window_s, tick_size=0.01, min_order_size=5,
                          fee_rate=0.07)


def older_ledger(path, upto: int, m: MarketIdentity) -> None:
    """A ledger file of schema `upto` (an older polymm's) with one resolved window (Up won) and one 10-share BUY at
    0.60 in it."""
    import sqlite3

    from polymm.trader.ledger import schema

    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, upto=upto)
    conn.execute("INSERT INTO windows (condition_id, window_start, window_end, resolved_leg) VALUES (?, ?, ?, 'up')",
                 (m.condition_id, m.window_start, m.window_end))
    conn.execute("INSERT INTO fills (trade_id, order_id, condition_id, strategy, leg, side, price, size, fee, role,"
                 " status, status_rank, match_ts, recorded_at, updated_at) VALUES"
                 " ('t1', 'o1', ?, 's1', 'up', 'BUY', 0.6, 10, 0, 'maker', 'CONFIRMED', 3, ?, ?, ?)",
                 (m.condition_id, m.window_start + 5, m.window_start + 5, m.window_start + 9))
    conn.close()


def fill(trade: str, leg: Leg, side: Side, price: float, size: float, ts: float, *, role: str = "maker",
         fee: float = 0.0, status: str = "MATCHED", order: str | None = None, strategy: str = "s1") -> FillView:
    return FillView(trade_id=trade, order_id=order or f"order-{trade}", client_id=None, strategy=strategy, leg=leg,
                    side=side, price=price, size=size, fee=fee, role=role, status=status, ts=ts)


@dataclass
class OrderLike:
    client_id: str
    order_id: str | None
    condition_id: str
    strategy: str = "s1"
    leg: Leg = Leg.UP
    side: Side = Side.BUY
    price: float = 0.6
    size: float = 10.0
    order_type: OrderType = OrderType.GTC
    post_only: bool = True
    role: Role = Role.ENTRY


def synthetic_ledger(path, windows: int, start: int, window_s: int = 60, seed: int = 1) -> None:
    """A ledger of `windows` traded windows: each buys 10 shares of one leg (maker), sells some back at a take-profit
    in half the windows (taker, with fee), and holds the rest to resolution. Deterministic for a seed."""
    import random

    from polymm.trader.ledger import LedgerWriter
    from polymm.trader.decision.fees import FeeSchedule, taker_fee

    rng = random.Random(seed)
    w = LedgerWriter(path, "live")
    w.start({"source": "synthetic"})
    for i in range(windows):
        m = market(start + i * window_s, window_s)
        w.window(m, ts=m.window_start)
        leg = Leg.UP if rng.random() < 0.5 else Leg.DOWN
        entry = round(rng.uniform(0.55, 0.8), 2)
        order = OrderLike(f"c{i}", f"o{i}", m.condition_id, leg=leg, price=entry)
        w.order_action("submit", order, "entry", ts=m.window_start + 1)
        w.fill(fill(f"t{i}a", leg, Side.BUY, entry, 10, m.window_start + 2, order=f"o{i}"), m.condition_id)
        if rng.random() < 0.5:
            price = round(min(0.99, entry + rng.choice((-0.1, 0.02, 0.05))), 2)
            w.fill(fill(f"t{i}b", leg, Side.SELL, price, 5, m.window_start + 20, role="taker",
                        fee=taker_fee(5, price, FeeSchedule(0.07)), order=f"o{i}s"), m.condition_id)
        w.resolution(m.condition_id, Leg.UP if rng.random() < entry else Leg.DOWN, ts=m.window_end + 5)
    w.close()


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def images_of(html_path) -> list[bytes]:
    """The PNGs embedded in a polymm-report page, decoded; asserts the page is self-contained (no script, no link)."""
    page = Page()
    page.feed(html_path.read_text())
    page.close()
    assert "script" not in page.tags and "link" not in page.tags and page.tags.count("html") == 1
    decoded = []
    for src in page.images:
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64"  # embedded: the file opens offline
        png = base64.b64decode(data, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        pixels = PIL.Image.open(io.BytesIO(png))
        pixels.load()  # decodes the whole image: a truncated or corrupt PNG raises here
        assert pixels.width > 100 and pixels.height > 100
        decoded.append(png)
    return decoded
