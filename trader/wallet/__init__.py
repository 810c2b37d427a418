"""One wallet, several series: what the traders of one wallet on one host share (README "Several series on one
wallet"; ARCHITECTURE.md, "Processes").

Each series runs its own feed and trader (the template units polymm-feed@<series>, polymm-trader@<series>); they
trade one wallet, so a few things exist once per wallet, not per series:

- **The series lock** (`locks.py`): one trader per (wallet, series), machine-wide (an abstract UNIX socket, as
  the wallet lock always was): two traders of one series would confuse each other's orders; traders of different
  series trade disjoint markets and never touch each other's orders (reconciliation, cancels, the user channel
  are all by market). A trader of an older polymm, which believes it is alone and cancels every order of the
  wallet, is refused, and cannot start beside traders of several series (the leader holds its lock).
- **The shared record** (`store.py`, `records.py`): a small file in /dev/shm per wallet, one slot per series, in
  which every trader publishes what its risk counts (exposure, open buys, today's P&L, its markets, its limits)
  and reads the others'. A claim for new buys takes the file's lock, so two series cannot both spend the last of
  the wallet-wide cap. It survives its writer: a dead trader's exposure stays counted (never lost) until the same
  series starts again and overwrites its own slot (never double counted), or until its window is long over.
- **The leader** (`locks.py`, `coordinator.py`): one trader of the wallet holds the leader lease and does what
  must happen once per wallet. It sends the exchange's dead-man-switch heartbeats: Polymarket's heartbeat is one
  chain per API key (each POST carries the id the previous one returned, docs/venue.md), so two senders would
  invalidate each other's ids, and a missed heartbeat cancels every order of the account, every series'. The others
  read the leader's last accepted heartbeat from the shared record and trip exactly as if their own had failed. It
  runs the redeemer (redemption must not run twice), and it reaps: a trader that died without cancelling (kill -9,
  a crash) leaves its orders on the book while the leader's heartbeats keep the account alive, so after the
  exchange's own dead-man delay the leader cancels the dead series' markets' orders. When the leader dies, the next
  trader to try takes the lease within a second and adopts the heartbeat chain (the exchange names the id it
  expects).

`accounting.py` is the pure part (what counts, what is left, what halts); the decision pipeline sees only
`trader/decision/wallet.py`'s WalletLimits.
"""
