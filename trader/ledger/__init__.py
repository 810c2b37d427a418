"""The trader's durable ledger (SQLite): every order action, fill and status change, window and resolution,
config change, mode and start/stop. The trader writes it (writer.py, off the decision thread); `mmctl history`
and `polymm-report` read it (read.py, history.py, report.py). Schema and migrations: schema.py."""
from .read import LedgerReadError, load_history, open_readonly
from .writer import LEDGER_FILE, LedgerWriter, default_path, find_path

__all__ = ["LEDGER_FILE", "LedgerReadError", "LedgerWriter", "default_path", "find_path", "load_history", "open_readonly"]
