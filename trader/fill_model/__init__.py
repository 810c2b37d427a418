"""The fill model: our orders against a market's book, shared by the backtest (recorded ticks) and paper trading
(the feed's live book). One definition of how an order of ours would have filled:

- The book is the market without us (a recording or the live feed; our paper orders are never in it). With
  depth, a taker walks it level by level; with top of book only, just the best level is known.
- Latency: an order or cancel reaches the exchange `latency` after it was sent (fill_model.latency_ms, default
  the place round trip measured on the sim); until then it is pending and meets the book of its arrival time.
- Taking (FAK, FOK, and the marketable part of a GTC/GTD that is not post-only): walk the opposite side up to
  the limit, each level at its own price, paying the taker fee (trader/decision/fees.py `taker_fee`: the market's rate and exponent) per level. A FAK's
  rest is cancelled, a FOK fills whole or not at all.
- Resting: a BUY fills when the asks reach its price, a SELL when the bids reach it, at its own price as a maker
  (no fee), never against the snapshot it arrived on. Queue position at the touch is not modelled beyond that:
  when the other side reaches our price everything ahead of us there must be gone (a book is never crossed),
  but sellers hitting our bid level while the ask stays above are not seen (the data has no trade sizes). Bias:
  resting orders fill less often than live - a bid is not filled by a market falling through the touch
  (optimistic for entries), a take-profit at the touch fills later (pessimistic).
- Consumption: what our fills take from a displayed level stays taken while the data shows that level (the data
  never contains our orders, so it keeps showing the shares we took); it is forgotten once the level is gone.
- Order timing (the market info's `oas` and `itode`): a cancel takes effect no earlier than the order's minimum
  age after it reached the exchange (held, never dropped); a marketable order of a market with a taker delay is
  held that long at the exchange and then matches the book of that moment (cancels wait it out).
- The exchange's checks: price on the tick and in [tick, 1 - tick], size >= the market minimum, sells within
  the free position (not locked by resting sells), buys within the free balance when a balance applies
  (paper), a post-only order that would cross is rejected. Orders open at the window end are cancelled.
"""
from polymm.trader.fill_model.book import ASK, BID, Book, Level
from polymm.trader.fill_model.window import (DEFAULT_FEE, DEFAULT_MIN_SIZE, DEFAULT_TICK, EPS, ModelOrder,
                                             ModelPosition, WindowFillModel, book_of)

__all__ = ["ASK", "BID", "Book", "DEFAULT_FEE", "DEFAULT_MIN_SIZE", "DEFAULT_TICK", "EPS", "Level", "ModelOrder",
           "ModelPosition", "WindowFillModel", "book_of"]
