"""The API's JSON, built from what the trader, systemd and the ledger said (pure: no sockets, no clock).

Shapes follow the original bot's API where it had one, so its users' scripts keep working:
- status keeps `is_running`, `main_process` and `trade_process` ({pid, returncode, alive}: the trader and the feed,
  the original's main_final.py and trade.py), and adds per-service state, mode, P&L, positions, orders, the book
  and warnings;
- start/stop/restart answer {"status": "started"|"stopped"|"restarted", "message"}; refusals {"detail": words},
  as FastAPI's HTTPException did;
- config is {"config": {section: {name: value}}} plus each key's source; PUT takes {"config": {...}} (nested or
  dotted keys) and answers {"status": "updated", "message", "changes"}.
"""
from __future__ import annotations

import math
from typing import Any

import msgspec

from polymm.ctl import protocol as p

from .pnl import Pnl
from .units import FEED, TRADER, UnitState

MAX_SETTINGS = 100  # more keys than the schema has: not a config change


class BadRequest(Exception):
    """A request body we cannot use, in words (HTTP 400)."""


# ---- status -------------------------------------------------------------------------------------------------


def _process(unit: UnitState | None, reply_pid: int | None) -> dict | None:
    """The original's {pid, returncode, alive} for one service: from systemd when it manages polymm, else from
    what the trader itself says (the feed then has no such entry)."""
    if unit is not None:
        if unit.load != "loaded":
            return None
        return {"pid": unit.pid, "alive": unit.running, "returncode": None if unit.running else unit.exit_status}
    if reply_pid:
        return {"pid": reply_pid, "alive": True, "returncode": None}
    return None


def status_json(*, units: dict[str, UnitState] | None, units_problem: str | None, reply: p.StatusReply | None,
                trader_problem: str | None, pnl: Pnl | None, now: float) -> dict:
    trader_unit = units.get(TRADER) if units else None
    feed_unit = units.get(FEED) if units else None
    if units is not None:
        is_running = bool(trader_unit and trader_unit.running and feed_unit and feed_unit.running)
    else:  # no systemd here: the trader answering is all we can know
        is_running = reply is not None
    warnings: list[str] = []
    if units_problem:
        warnings.append(units_problem)
    for unit in (feed_unit, trader_unit):
        if unit is not None and unit.load == "loaded" and not unit.running:
            ended = f" (last exit status {unit.exit_status})" if unit.exit_status not in (None, 0) else ""
            warnings.append(f"{unit.name} is {unit.active}{ended}")
    if trader_problem and not (trader_unit is not None and not trader_unit.running):
        warnings.append(f"trader: {trader_problem}")
    today = pnl.today.totals if pnl is not None and pnl.problem is None else None
    if pnl is not None and pnl.problem:
        warnings.append(f"ledger: {pnl.problem}")
    trader: dict[str, Any] = {"reachable": reply is not None, "problem": trader_problem}
    out: dict[str, Any] = {
        "is_running": is_running,
        "main_process": _process(trader_unit, reply.pid if reply else None),
        "trade_process": _process(feed_unit, None),
        "services": {name.removesuffix(".service"): unit.as_dict() for name, unit in (units or {}).items()},
        "systemd": units is not None,
        "trader": trader,
        "mode": reply.mode if reply else None,
        "now": now,
        "warnings": warnings,
    }
    if reply is None:
        out.update(pnl={"today": today, "unrealised": None}, positions=[], open_orders=[], book=[], exposure=[])
        return out
    trader.update(state=reply.state, healthy=reply.healthy, paused=reply.paused, pid=reply.pid,
                  started_at=reply.started_at, decisions=reply.decisions, last_decision_at=reply.last_decision_at,
                  feed_age_ms=reply.feed_age_ms, heartbeat_ok=reply.heartbeat_ok, fair_up=reply.fair_up)
    warnings += [w for w in reply.warnings if w not in warnings]
    warnings += [f"config: {w}" for w in reply.config_warnings]
    out.update(
        window={"condition_id": reply.condition_id or None, "start": reply.window_start or None,
                "end": reply.window_end or None},
        pnl={"today": today, "unrealised": reply.unrealised_pnl,
             "today_with_unrealised": None if today is None else round(today["net"] + reply.unrealised_pnl, 6),
             "session_realised": reply.realised_pnl},
        wallet={"balance_usd": reply.balance_usd, "open_value_usd": reply.open_value_usd,
                "awaiting_redemption_usd": reply.awaiting_redemption_usd},
        positions=p.to_builtins(reply.positions), open_orders=p.to_builtins(reply.orders),
        book=p.to_builtins(reply.book), exposure=p.to_builtins(reply.exposure),
        blocked_legs=dict(reply.blocked_legs), pending_restart=list(reply.pending_restart),
    )
    return out


# ---- config -------------------------------------------------------------------------------------------------


def config_json(reply: p.ConfigReply) -> dict:
    """{"config": nested effective values, "entries": one row per key with its source, "file", ...}. Secrets are
    redacted here again, whatever the trader sent (as mmctl does)."""
    nested: dict[str, Any] = {}
    entries = []
    for e in reply.entries:
        value, default = p.redact(e.key, e.value), p.redact(e.key, e.default)
        section, _, name = e.key.partition(".")
        if name:
            nested.setdefault(section, {})[name] = value
        else:
            nested[section] = value
        entries.append({"key": e.key, "value": value, "default": default, "source": e.source or (
            "override" if e.override else None), "live": e.live, "pending_restart": e.pending_restart})
    return {"config": nested, "entries": entries, "file": reply.source, "overrides_path": reply.overrides_path,
            "warnings": list(reply.warnings)}


def parse_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def settings_from_body(body: Any) -> dict[str, Any]:
    """The keys to set from a PUT body: {"config": {...}} (the original's shape) or the object itself; nested
    sections ({"s1": {"entry_threshold": 0.6}}) and dotted keys ({"s1.entry_threshold": 0.6}) alike."""
    if not isinstance(body, dict):
        raise BadRequest('the request body must be a JSON object: {"config": {"s1.entry_threshold": 0.62}}')
    settings = body["config"] if set(body) == {"config"} else body
    if not isinstance(settings, dict):
        raise BadRequest('"config" must be an object of keys and values: {"config": {"s1.entry_threshold": 0.62}}')
    flat: dict[str, Any] = {}

    def walk(prefix: str, obj: dict) -> None:
        for name, value in obj.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, dict):
                walk(key, value)
            else:
                flat[key] = value
    walk("", settings)
    if not flat:
        raise BadRequest('nothing to set: give {"config": {"KEY": VALUE, ...}}')
    if len(flat) > MAX_SETTINGS:
        raise BadRequest(f"{len(flat)} keys in one request; the config has fewer than {MAX_SETTINGS}")
    return flat


def as_text(key: str, value: Any) -> str:
    """A JSON value as the text `mmctl set` would send (the trader's schema parses and validates it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"{key}: {value} is not a number the config takes")
        return repr(value)
    if isinstance(value, str):
        return value
    if value is None:
        raise BadRequest(f"{key}: null is not a value; give the value to set")
    raise BadRequest(f"{key}: give a number, true/false or text (the cap schedule as text, e.g. \"0-300:3,300-900:4\")")


def changed_settings(flat: dict[str, Any], entries: list[p.ConfigEntry]) -> tuple[dict[str, str], list[str]]:
    """(the settings to send as text, the keys left out because they already have that value). A whole config
    read with GET and sent back with one value changed changes that one value (restart-only keys left as they
    are do not refuse it)."""
    current = {e.key: e.value for e in entries}
    send, same = {}, []
    for key, value in flat.items():
        # A secret comes back from GET as "<redacted>": sending that back means "leave it", never "set it to that".
        if (key in current and _equal(value, current[key])) or (value == p.REDACTED and p.is_secret_key(key)):
            same.append(key)
            continue
        send[key] = as_text(key, value)
    return send, same


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return a == b


def refusal_json(message: str, code: str, problems: list[p.KeyProblem]) -> dict:
    """A refused change: `detail` (one line, as the original's HTTPException) and each refused key in words."""
    errors = [{"key": q.key, "code": q.code, "message": q.message, "suggestion": q.suggestion,
               "restart_required": q.code == p.E_NOT_LIVE} for q in problems]
    return {"detail": message, "code": code, "errors": errors}


def change_json(reply: p.ChangeReply, unchanged: list[str]) -> dict:
    changes = [{"key": c.key, "old": p.redact(c.key, c.old), "new": p.redact(c.key, c.new)} for c in reply.changes]
    message = reply.message or ("no change" if not changes else "applied")
    return {"status": "updated" if changes else "unchanged", "message": message, "changes": changes,
            "unchanged": unchanged, "pending_restart": list(reply.pending_restart), "warnings": list(reply.warnings)}
