"""`python -m polymm.trader.backtest` runs the backtest CLI (the same as the `polymm-backtest` script)."""
import sys

from polymm.trader.backtest.cli import main

sys.exit(main())
