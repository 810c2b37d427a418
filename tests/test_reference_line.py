"""mmctl status's reference-price line (ctl/reference_line.py)."""
from __future__ import annotations

import math

from polymm.ctl.reference_line import reference_line


def test_the_documented_line():
    assert reference_line(97_123.45, 0.14, 97_050.0, fair_up=0.64) == (
        "BTC 97,123.45 chainlink 140ms · open 97,050.00 (+0.08%) · fair up 0.64 down 0.36")


def test_stale_price_unknown_open_and_no_fair_value_are_said_in_words():
    line = reference_line(97_123.45, 12.34, math.nan, "unknown (feed started after the open)", None)
    assert line == "BTC 97,123.45 chainlink 12.3s STALE · open unknown (feed started after the open) · fair —"
    assert reference_line(None, None, None) == "BTC — (no chainlink price yet) · open unknown · fair —"
    assert reference_line(96_000.0, 0.5, 97_000.0, fair_up=0.02).endswith("(-1.03%) · fair up 0.02 down 0.98")
