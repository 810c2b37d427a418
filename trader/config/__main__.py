"""`python -m polymm.trader.config --markdown-reference | --example-toml | --check FILE` (see cli.py)."""
from polymm.trader.config.cli import main

raise SystemExit(main())
