"""The redeemer: turns resolved positions back into pUSD (and, optionally, full Up+Down sets of ended
windows), through Polymarket's gasless relayer. Its own thread; the decision loop never waits for it.

    calls.py      contract addresses and calldata (pure)
    positions.py  the Data API's positions rows, decoded once
    plan.py       what to redeem / merge now, and the accounting figures (pure)
    journal.py    every request and its outcome, in the state directory (restart-safe)
    relayer.py    credentials and the official relayer client (I/O)
    worker.py     the thread tying them together

docs/redemption.md has the sources for each step.
"""
