"""polymm: a market maker for Polymarket's "Bitcoin Up or Down - 15 minute" markets.

This package holds the plumbing both services share (logging, sd_notify, signals, names of the
environment, the Prometheus exporter, the reconnecting WebSocket client). The services live in their own subpackages: polymm.feed, polymm.trader, polymm.ctl,
the local Polymarket stand-in in polymm.sim, and the demo application in polymm.demo.
"""
__version__ = "0.1.0"
