"""`polymm-backtest`: the tick-file format (ticks_file), the replay (runner), the text report (report) and the CLI
(cli). The fill model it replays against is trader/fill_model.py, shared with paper trading."""
