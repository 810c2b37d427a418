"""`polymm-backtest`: the tick-file format (ticks_file), the replay (runner), our own live orders taken out of a
recording (own_orders), the parameter sweep across processes (sweep, heatmap), the text report (report) and the CLI
(cli). The fill model it replays against is trader/fill_model/, shared with paper trading."""
