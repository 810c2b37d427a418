"""Order and fill state, reconciliation, the order journal, the wallet lock, balance and resolution watchers."""
