"""Paper trading: a local exchange that fills our orders against the live book with the shared fill model."""
