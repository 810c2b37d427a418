"""Test helpers, one module per area: ctl, engine, execution, feed, live_trader, strategy, waiting, recorded."""
