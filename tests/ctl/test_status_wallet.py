"""`mmctl status`: the wallet line (cash, open positions, awaiting redemption, redeemed today) and the
redeemer's warning, in text and in --json."""
from __future__ import annotations

import json

from polymm.ctl import status as status_view
from tests.support.ctl import NOW, status_reply

WARNING = ("3 positions worth $41.20 are redeemable: set the builder credentials (see README) or redeem in "
           "Polymarket's UI")


def render(reply) -> str:
    feed = status_view.feed_health(None, NOW, problem="no segment")
    return status_view.render_status(status_view.build_status(feed, reply, None), NOW)


def test_the_wallet_line_shows_cash_positions_awaiting_and_redeemed_today():
    reply = status_reply(balance_usd=812.4, open_value_usd=4.0, awaiting_redemption_usd=41.2,
                         redeemed_today_usd=12.0, merged_today_usd=5.0, healthy=False, warnings=[WARNING])
    text = render(reply)
    wallet = next(line for line in text.splitlines() if line.startswith("wallet"))
    assert wallet.split() == ["wallet", "cash", "812.40", "open", "positions", "4.00", "awaiting", "redemption",
                              "41.20", "redeemed", "today", "12.00", "(+", "merged", "5.00)"]
    assert WARNING in text


def test_json_carries_the_same_figures():
    reply = status_reply(awaiting_redemption_usd=41.2, redeemed_today_usd=0.0, warnings=[WARNING])
    feed = status_view.feed_health(None, NOW, problem="no segment")
    data = json.loads(json.dumps(status_view.status_json(status_view.build_status(feed, reply, None))))
    trader = data["trader"]
    assert trader["awaiting_redemption_usd"] == 41.2 and trader["redeemed_today_usd"] == 0.0
    assert trader["balance_usd"] == 812.4 and trader["open_value_usd"] is None
    assert WARNING in data["warnings"]


def test_with_several_series_the_worst_decides_the_exit_code_and_busy_is_not_down():
    from polymm.ctl import series_status

    feed = status_view.feed_health(None, NOW, problem="no segment")
    views = {
        "healthy": status_view.StatusView(verdict=status_view.HEALTHY, exit_code=status_view.EXIT_HEALTHY,
                                          feed=feed, trader=None, trader_problem=None, warnings=[], healthy=True),
        "busy": status_view.StatusView(verdict=status_view.BUSY, exit_code=status_view.EXIT_BUSY, feed=feed,
                                       trader=None, trader_problem="busy", warnings=[], healthy=False),
    }
    assert series_status.Overview(views).exit_code == status_view.EXIT_BUSY  # busy, never reported as down
    views["warned"] = status_view.StatusView(verdict=status_view.UNHEALTHY, exit_code=status_view.EXIT_UNHEALTHY,
                                             feed=feed, trader=None, trader_problem=None, warnings=[], healthy=False)
    assert series_status.Overview(views).exit_code == status_view.EXIT_UNHEALTHY
    views["down"] = status_view.StatusView(verdict=status_view.TRADER_DOWN, exit_code=status_view.EXIT_TRADER_DOWN,
                                           feed=feed, trader=None, trader_problem=None, warnings=[], healthy=False)
    assert series_status.Overview(views).exit_code == status_view.EXIT_TRADER_DOWN
