"""Property tests of the sim's matching engine: whatever sequence of orders, cancels, clock advances and
failed trades arrives, the book is never crossed at rest, pUSD and shares are conserved (fees and
minted pairs accounted), reservations match the working orders, and a cancelled order never fills."""
from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from polymm.sim.engine import BACKGROUND, Engine, MarketSpec, SimOrder, TradeEvent

CID = "0x" + "cd" * 32
UP, DOWN = "101", "202"
TRADERS = ["alice", "bob", "carol"]
FUND = D(200)
# Mostly valid, crossing-prone prices and sizes, with a share of invalid ones so rejections are exercised.
PRICE_TICKS = st.one_of(st.integers(35, 65), st.integers(35, 65), st.integers(0, 100))
SIZES = st.one_of(st.integers(500, 3000), st.integers(500, 3000), st.integers(1, 4000)).map(lambda c: D(c) / 100)


class EngineMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.engine = Engine(default_fund=FUND, mined_after_s=1, confirmed_after_s=3)
        self.engine.add_market(MarketSpec(CID, "btc-updown-15m-0", UP, DOWN, 0, 900))
        for who in TRADERS:
            self.engine.ensure_account(who)
        self.now = 0.0
        self.seq = 0
        self.cancelled: dict[str, D] = {}  # order id -> size_matched when cancelled
        self.trade_ids: list[str] = []
        self.failed_any = False
        self.resolved = False

    def _order(self, who, token, side, ticks, size, order_type, post_only):
        self.seq += 1
        return SimOrder(order_id=f"0x{self.seq:064x}", owner=f"key-{who}", maker_address=who, market=CID,
                        token_id=token, side=side, price=D(ticks) / 100, original_size=D(size),
                        order_type=order_type, post_only=post_only)

    @precondition(lambda self: not self.resolved)
    @rule(who=st.sampled_from(TRADERS + [BACKGROUND]), token=st.sampled_from([UP, DOWN]),
          side=st.sampled_from(["BUY", "SELL"]), ticks=PRICE_TICKS, size=SIZES,
          order_type=st.sampled_from(["GTC", "GTC", "GTC", "FAK", "FOK"]),
          post_only=st.sampled_from([False, False, False, True]))
    def submit(self, who, token, side, ticks, size, order_type, post_only):
        self.now += 0.1
        result = self.engine.submit(self._order(who, token, side, ticks, size, order_type, post_only), self.now)
        if result.ok:
            self.trade_ids += [t.trade_id for t in result.trades]
        self._check_new_events()

    @precondition(lambda self: not self.resolved)
    @rule(pick=st.integers(0, 50))
    def cancel(self, pick):
        working = [o for who in TRADERS for o in self.engine.open_orders(f"key-{who}")]
        if not working:
            return
        target = working[pick % len(working)]
        assert self.engine.cancel(target.order_id, target.owner, self.now) is None
        self.cancelled[target.order_id] = target.size_matched
        # A second cancel finds nothing to cancel.
        assert self.engine.cancel(target.order_id, target.owner, self.now) is not None

    @rule(dt=st.floats(0.1, 5.0))
    def advance(self, dt):
        self.now += dt
        self.engine.advance(self.now)
        self._check_new_events()

    @precondition(lambda self: not self.resolved)
    @rule(pick=st.integers(0, 100))
    def fail_trade(self, pick):
        pending = [t for t in self.trade_ids
                   if (tr := self.engine.get_trade(t)) is not None and tr.status in ("MATCHED", "MINED")]
        if not pending:
            return
        self.engine.fail_trade(pending[pick % len(pending)], self.now)
        self.failed_any = True
        self._check_new_events()

    @precondition(lambda self: not self.resolved)
    @rule(up_wins=st.booleans())
    def resolve(self, up_wins):
        self.engine.resolve(CID, UP if up_wins else DOWN, self.now)
        self.resolved = True
        assert not self.engine.positions_of_token(UP) and not self.engine.positions_of_token(DOWN)

    def _check_new_events(self):
        for event in self.engine.events:
            if isinstance(event, TradeEvent) and event.trade.status == "MATCHED":
                filled = {f.order_id for f in event.trade.maker_fills} | {event.trade.taker_order_id}
                assert not filled & set(self.cancelled), "a cancelled order was filled"
        self.engine.events.clear()

    # ---- invariants ---------------------------------------------------------------------------------
    @invariant()
    def book_is_not_crossed_at_rest(self):
        bids, asks = self.engine.book(UP)
        if bids and asks:
            assert bids[0][0] < asks[0][0]
        down_bids, down_asks = self.engine.book(DOWN)
        assert [(1 - p, s) for p, s in down_asks] == bids and [(1 - p, s) for p, s in down_bids] == asks

    @invariant()
    def pusd_and_shares_are_conserved(self):
        pusd = sum(self.engine.accounts().values(), D(0))
        up = sum(self.engine.positions_of_token(UP).values(), D(0))
        down = sum(self.engine.positions_of_token(DOWN).values(), D(0))
        # Minting locks 1 pUSD per pair and merging releases it; resolution pays the winners; fees
        # leave the accounts for the exchange.
        assert up == down
        assert pusd + self.engine.fees_collected + up == FUND * len(TRADERS)

    @invariant()
    def reservations_match_working_orders(self):
        for who in TRADERS:
            working = self.engine.open_orders(f"key-{who}")
            reserved = sum((o.price * (o.original_size - o.size_matched) for o in working if o.side == "BUY"), D(0))
            assert self.engine.balance(who) - self.engine.free_balance(who) == reserved
            for token in (UP, DOWN):
                shares = sum((o.original_size - o.size_matched for o in working
                              if o.side == "SELL" and o.token_id == token), D(0))
                assert self.engine.position(who, token) - self.engine.free_position(who, token) == shares
            if not self.failed_any:  # a reversed trade may take back shares already sold on
                assert self.engine.free_balance(who) >= 0
                assert all(self.engine.free_position(who, t) >= 0 for t in (UP, DOWN))

    @invariant()
    def book_levels_total_the_working_orders(self):
        working = [o for who in TRADERS + [BACKGROUND] for o in self.engine.open_orders(f"key-{who}")]
        totals: dict[tuple[bool, D], D] = {}
        for o in working:
            is_bid = (o.side == "BUY") == (o.token_id == UP)
            price = o.price if o.token_id == UP else 1 - o.price
            totals[(is_bid, price)] = totals.get((is_bid, price), D(0)) + o.original_size - o.size_matched
        bids, asks = self.engine.book(UP)
        assert dict(((True, p), s) for p, s in bids) | dict(((False, p), s) for p, s in asks) == totals

    @invariant()
    def cancelled_orders_never_gain_fills(self):
        for order_id, matched in self.cancelled.items():
            order = self.engine.get_order(order_id)
            assert order.status == "CANCELED"
            assert order.size_matched <= matched


EngineMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestEngineProperties = EngineMachine.TestCase
