"""polymm-trader: config, model, engine and service here; one sub-package per concern (venue, execution, decision,
control, backtest) and the fill model. See ARCHITECTURE.md."""
