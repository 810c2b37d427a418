"""Everything that speaks Polymarket's protocol: REST gateway, order signing, user-channel wire and stream, heartbeats.

The only place that knows the exchange's quirks; imports nothing from `decision`."""
