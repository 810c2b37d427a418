"""The trader's durable ledger (SQLite): every order action, fill and status change, window and resolution,
config change, mode and start/stop. The trader writes it (writer.py, off the decision thread); `mmctl history`
and `polymm-report` (ctl/) read it through this package's read API (read.py, history.py): the trader owns the
schema and the query. Schema and migrations: schema.py; backtest results as ledger records: from_backtest.py.

Why the order journal (execution/order_journal.py) stays a separate store for restart attribution: it must hold an
order *before* the order is sent (written synchronously on the submitting worker, one line-buffered append), while
the ledger is written asynchronously by design and may be unwritable for a while - during which exits and stops
still go out and must still be attributed after a restart. The journal is also small (two days, read whole at
start) where the ledger grows for as long as the trader trades. The ledger records every journaled order too
(its `submit` action), so nothing is known only to the journal for longer than a moment."""
from .history import History
from .read import LedgerReadError, load_entries, load_history, open_readonly
from .writer import LEDGER_FILE, LedgerWriter, default_path, find_path

__all__ = ["History", "LEDGER_FILE", "LedgerReadError", "LedgerWriter", "default_path", "find_path", "load_entries", "load_history", "open_readonly"]
