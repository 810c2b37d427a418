"""The trader's durable ledger (SQLite): every order action, fill and status change, window and resolution,
config change, mode and start/stop. The trader writes it (writer.py, off the decision thread); `mmctl history`
and `polymm-report` (ctl/) read it through this package's read API (read.py, history.py): the trader owns the
schema and the query. Schema and migrations: schema.py; backtest results as ledger records: from_backtest.py."""
from .history import History
from .read import LedgerReadError, load_entries, load_history, open_readonly
from .writer import LEDGER_FILE, LedgerWriter, default_path, find_path

__all__ = ["History", "LEDGER_FILE", "LedgerReadError", "LedgerWriter", "default_path", "find_path", "load_entries", "load_history", "open_readonly"]
