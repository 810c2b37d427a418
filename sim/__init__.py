"""polymm-sim: a local stand-in for Polymarket (Gamma, CLOB REST, WebSockets, matching engine, faults)."""
