"""Rules across keys: combinations strategies.md calls invalid (a `ConfigError`) and legal but probably
unintended ones (`warnings`, in words)."""
from polymm.listen import MetricsError, parse_listen
from polymm.trader.config.schema import CONFIG_TICK, Config, ConfigError
from polymm.trader.config.values import _fmt


def _check_cross_fields(cfg: Config, source: str) -> None:
    """Combinations strategies.md calls invalid."""
    s1, risk, window = cfg.s1, cfg.risk, cfg.market.window_s
    ceiling = round(1 - CONFIG_TICK, 10)
    if s1.max_tp_price > ceiling:
        raise ConfigError(
            "s1.max_tp_price",
            f"{_fmt(s1.max_tp_price)} is above 1 - tick ({_fmt(ceiling)}); the exchange rejects such prices",
            source,
        )
    expected_start = 0.0
    for i, w in enumerate(s1.cap_schedule):
        label = f"window {i + 1} ({_fmt(w.start_s)}-{_fmt(w.end_s)})"
        if w.end_s <= w.start_s:
            raise ConfigError("s1.cap_schedule", f"{label} ends before it starts", source)
        if w.start_s < expected_start:
            raise ConfigError("s1.cap_schedule", f"{label} overlaps the previous window, which ends at {_fmt(expected_start)} s", source)
        if w.start_s > expected_start:
            raise ConfigError(
                "s1.cap_schedule",
                f"{label} leaves a gap: no cap between {_fmt(expected_start)} s and {_fmt(w.start_s)} s",
                source,
            )
        expected_start = w.end_s
    if expected_start < window:
        raise ConfigError(
            "s1.cap_schedule",
            f"leaves a gap: no cap between {_fmt(expected_start)} s and the window end at {window} s (market.window_s)",
            source,
        )
    if s1.late_window_s > window:
        raise ConfigError(
            "s1.late_window_s",
            f"{_fmt(s1.late_window_s)} s is longer than the market window ({window} s, market.window_s)",
            source,
        )
    if risk.cancel_before_end_s >= window:
        raise ConfigError(
            "risk.cancel_before_end_s",
            f"{_fmt(risk.cancel_before_end_s)} s is not shorter than the market window ({window} s): nothing could ever trade",
            source,
        )
    try:
        parse_listen(cfg.metrics.listen, source="metrics.listen")
    except MetricsError as e:
        # the message names the key and the value already: "metrics.listen='x': expected HOST:PORT ..."
        raise ConfigError("metrics.listen", str(e).removeprefix("metrics.listen="), source) from None


def warnings(cfg: Config) -> list[str]:
    """Legal but probably unintended settings, in words (shown by `mmctl set` and `mmctl status`)."""
    out: list[str] = []
    s1, s2, risk, window = cfg.s1, cfg.s2, cfg.risk, cfg.market.window_s
    if not s1.enabled and not s2.enabled:
        out.append("s1.enabled and s2.enabled are both false: the trader places no orders")
    if s1.enabled:
        if s1.entry_threshold <= s1.sl_floor:
            out.append(
                f"s1.entry_threshold {_fmt(s1.entry_threshold)} is at or below s1.sl_floor {_fmt(s1.sl_floor)}: "
                "every entry would stop out at once"
            )
        if s1.late_hold_threshold <= s1.late_sl_trigger:
            out.append(
                f"s1.late_hold_threshold {_fmt(s1.late_hold_threshold)} is at or below s1.late_sl_trigger "
                f"{_fmt(s1.late_sl_trigger)}: a held position could stop out as soon as it is held"
            )
        if s1.sl_order_price >= s1.sl_floor:
            out.append(
                f"s1.sl_order_price {_fmt(s1.sl_order_price)} is at or above s1.sl_floor {_fmt(s1.sl_floor)}: "
                "a stop-loss sell may not fill when the bid has fallen below the trigger"
            )
        for w in s1.cap_schedule:
            if w.start_s < window and w.cap_usd / s1.entry_threshold < s1.min_order_size:
                out.append(
                    f"s1.cap_schedule {_fmt(w.start_s)}-{_fmt(w.end_s)} s: ${_fmt(w.cap_usd)} buys fewer than "
                    f"s1.min_order_size ({_fmt(s1.min_order_size)}) shares at s1.entry_threshold "
                    f"{_fmt(s1.entry_threshold)} or above: S1 never enters then"
                )
        if s1.cap_schedule[-1].end_s > window:
            out.append(
                f"s1.cap_schedule runs to {_fmt(s1.cap_schedule[-1].end_s)} s but market.window_s is {window}: "
                "the windows after that never apply"
            )
        if 0 < s1.late_window_s <= risk.cancel_before_end_s:
            out.append(
                f"s1.late_window_s {_fmt(s1.late_window_s)} is not longer than risk.cancel_before_end_s "
                f"{_fmt(risk.cancel_before_end_s)}: the late rules never act"
            )
    if s2.enabled:
        if s2.entry_ask_threshold <= s2.sl_price:
            out.append(
                f"s2.entry_ask_threshold {_fmt(s2.entry_ask_threshold)} is at or below s2.sl_price "
                f"{_fmt(s2.sl_price)}: entries could stop out at once"
            )
        if s2.order_size * s2.entry_ask_threshold > s2.target_usd:
            out.append(
                f"s2.order_size {_fmt(s2.order_size)} at s2.entry_ask_threshold {_fmt(s2.entry_ask_threshold)} "
                f"exceeds s2.target_usd {_fmt(s2.target_usd)}: S2 will rarely or never enter"
            )
        if s2.window_s > window:
            out.append(f"s2.window_s {_fmt(s2.window_s)} is longer than market.window_s {window}: S2 may enter all window long")
        if s2.window_s <= risk.cancel_before_end_s:
            out.append(
                f"s2.window_s {_fmt(s2.window_s)} is not longer than risk.cancel_before_end_s "
                f"{_fmt(risk.cancel_before_end_s)}: S2 never enters"
            )
    if risk.max_exposure_usd == 0:
        out.append("risk.max_exposure_usd is 0: no entries at all")
    return out
