"""polymm-feed: discovery, market WebSocket, book, recorder; owns the market identity (market.py) and the shared
memory (shm/) the trader reads."""
