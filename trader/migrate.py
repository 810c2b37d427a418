"""`polymm-migrate config.json`: the original bot's settings into a polymm config.toml, its secrets into an env file.

The original bot kept everything in one `config.json`: each strategy's parameters under its legacy names (the
schema's `legacy` names: ENTRY_BID_THRESHOLD, CAP_SCHEDULE, ... listed in the README's config reference), per
strategy, and the wallet's secrets beside them. Here:

- every recognised value goes into config.toml under its polymm key, each validated by the one schema
  (trader/config/) on its own, then the file as a whole (cross-field rules) exactly as the trader will load it;
- every key that could not be mapped becomes a comment in config.toml saying which and why (unknown name, a name
  both strategies use outside a strategy section, a value the schema refuses);
- secrets (private key, API credentials, the proxy/funder address, signature type) go into an environment file
  created with mode 0600, never into the TOML, and are never printed: output names them, never their values.

Pure core (`migrate(doc) -> Migration`), I/O at the edge (`main`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from polymm import env
from polymm.trader import config as cfgmod

# Secret names the original bot (and its forks) used -> the environment variable polymm reads. Compared after
# normalising (upper case, non-alphanumerics dropped), so "private_key", "PRIVATE-KEY" and "PrivateKey" all match.
SECRET_NAMES: dict[str, str] = {
    "PK": env.PK, "PRIVATEKEY": env.PK, "POLYPRIVATEKEY": env.PK, "WALLETPRIVATEKEY": env.PK, "KEY": env.PK,
    "APIKEY": env.POLY_API_KEY, "POLYAPIKEY": env.POLY_API_KEY, "CLOBAPIKEY": env.POLY_API_KEY,
    "APISECRET": env.POLY_API_SECRET, "POLYAPISECRET": env.POLY_API_SECRET, "CLOBSECRET": env.POLY_API_SECRET,
    "SECRET": env.POLY_API_SECRET,
    "APIPASSPHRASE": env.POLY_PASSPHRASE, "PASSPHRASE": env.POLY_PASSPHRASE, "POLYPASSPHRASE": env.POLY_PASSPHRASE,
    "CLOBPASSPHRASE": env.POLY_PASSPHRASE,
    "BROWSERADDRESS": env.BROWSER_ADDRESS, "PROXYADDRESS": env.BROWSER_ADDRESS, "FUNDER": env.BROWSER_ADDRESS,
    "FUNDERADDRESS": env.BROWSER_ADDRESS, "POLYMARKETPROXYADDRESS": env.BROWSER_ADDRESS,
    "PROXYWALLET": env.BROWSER_ADDRESS, "DEPOSITWALLET": env.BROWSER_ADDRESS,
    "SIGNATURETYPE": env.SIGNATURE_TYPE, "SIGTYPE": env.SIGNATURE_TYPE,
}
# Anything else whose name looks like a credential is never copied anywhere, and its value never shown.
_SECRETISH = re.compile(r"KEY|SECRET|PASS|TOKEN|PRIVATE|MNEMONIC|SEED|CREDENTIAL|AUTH", re.I)
ENV_ORDER = (env.PK, env.BROWSER_ADDRESS, env.SIGNATURE_TYPE, env.POLY_API_KEY, env.POLY_API_SECRET,
             env.POLY_PASSPHRASE)


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _section_of(name: str) -> str | None:
    """A strategy section name of the original bot's file ("S1", "STRATEGY_1", "strategy1", "strat_2", ...)."""
    n = _norm(name)
    for section, digit in (("s1", "1"), ("s2", "2")):
        if n in (f"S{digit}", f"STRATEGY{digit}", f"STRAT{digit}", f"STRATEGY{'ONE' if digit == '1' else 'TWO'}"):
            return section
    return None


def legacy_names() -> dict[str, dict[str, str]]:
    """section -> {normalised legacy name: polymm key}, from the schema (the one place legacy names live)."""
    out: dict[str, dict[str, str]] = {}
    for info in cfgmod.schema():
        if info.legacy:
            section = info.key.split(".", 1)[0]
            out.setdefault(section, {})[_norm(info.legacy)] = info.key
    return out


@dataclass
class Mapped:
    key: str  # polymm key, "s1.entry_threshold"
    value: Any  # in the form the TOML file takes (cap schedule as its string form)
    origin: str  # where it came from in config.json, "STRATEGY_1.ENTRY_BID_THRESHOLD"


@dataclass
class Migration:
    values: list[Mapped] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line each: "ORIGIN: why" (never a secret's value)
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> value
    secret_origins: dict[str, str] = field(default_factory=dict)  # env var -> where it came from
    problems: list[str] = field(default_factory=list)  # the result as a whole does not validate
    warnings: list[str] = field(default_factory=list)  # legal but suspicious (the schema's warnings)


# ---------------------------------------------------------------------------------------------------------
# Values


def _plain(value: Any) -> str:
    """A non-secret value for a comment: short, one line."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cap_schedule(value: Any) -> str:
    """The original bot's CAP_SCHEDULE in whichever shape it was written, as polymm's `start-end:usd,...`.
    ValueError in words when the shape is not one we know."""
    if isinstance(value, str):
        cfgmod.parse_cap_schedule(value)  # syntax errors in words
        return value.strip()
    windows: list[tuple[Any, Any, Any]] = []
    if isinstance(value, dict):  # {"0-300": 3, "300-600": 4}
        for span, cap in value.items():
            start, sep, end = str(span).partition("-")
            if not sep:
                raise ValueError(f"cap window {span!r} is not `start-end`")
            windows.append((start, end, cap))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) == 3:  # [[0, 300, 3], ...]
                windows.append(tuple(item))
            elif isinstance(item, dict):  # [{"start": 0, "end": 300, "cap": 3}, ...]
                low = {_norm(k): v for k, v in item.items()}
                start = next((low[k] for k in ("START", "STARTS", "FROM", "STARTSEC") if k in low), None)
                end = next((low[k] for k in ("END", "ENDS", "TO", "ENDSEC") if k in low), None)
                cap = next((low[k] for k in ("CAP", "CAPUSD", "USD", "MAXUSD", "CAPUSDC", "SIZEUSD") if k in low), None)
                if None in (start, end, cap):
                    raise ValueError(f"cap window {_plain(item)} needs a start, an end and a cap")
                windows.append((start, end, cap))
            else:
                raise ValueError(f"cap window {_plain(item)} is neither [start, end, cap] nor an object")
    else:
        raise ValueError(f"{_plain(value)} is not a cap schedule (a string `start-end:usd,...` or a list of windows)")
    if not windows:
        raise ValueError("empty cap schedule")
    parts = []
    for start, end, cap in windows:
        try:
            numbers = [float(start), float(end), float(cap)]
        except (TypeError, ValueError):
            raise ValueError(f"cap window {start}-{end}:{cap} is not three numbers") from None
        if not all(math.isfinite(x) for x in numbers):
            raise ValueError(f"cap window {start}-{end}:{cap} is not three finite numbers")
        parts.append("{}-{}:{}".format(*(cfgmod._fmt(x) for x in numbers)))
    return ",".join(parts)


def _leg_mode(value: Any) -> Any:
    """LEG_SELECTION_MODE as the original bot wrote it ("HIGHEST_BID", "up-only", ...) in polymm's spelling."""
    if isinstance(value, str):
        return re.sub(r"[^a-z]+", "_", value.strip().lower()).strip("_")
    return value


def check_value(key: str, value: Any) -> tuple[Any, str | None]:
    """(the value as the TOML file takes it, None) when the schema accepts `value` for `key` on its own, else
    (None, why in words). Numbers written as strings ("0.6") are accepted, as the original bot's loader did."""
    try:
        if key == "s1.cap_schedule":
            value = _cap_schedule(value)
        elif key == "s1.leg_mode":
            value = _leg_mode(value)
    except ValueError as exc:
        return None, str(exc)
    section, name = key.split(".", 1)
    raw: dict[str, Any] = {}
    try:
        cfgmod._set_raw(raw, key, value, "config.json")
        typed = msgspec.convert(raw, cfgmod.Config, strict=False)
    except cfgmod.ConfigError as exc:
        return None, str(exc)
    except msgspec.ValidationError as exc:
        return None, str(cfgmod._error_from_msgspec(exc, "", raw))
    return cfgmod.get_key(typed, key), None


# ---------------------------------------------------------------------------------------------------------
# The core


def migrate(doc: Any) -> Migration:
    """Map a decoded config.json. Never raises on content: everything it cannot use is in `skipped`."""
    out = Migration()
    if not isinstance(doc, dict):
        out.problems.append("config.json is not a JSON object of settings")
        return out
    names = legacy_names()
    seen: dict[str, str] = {}  # polymm key -> origin, to say when two entries map to one key

    def take_secret(name: str, value: Any, origin: str) -> bool:
        if isinstance(value, dict):
            return False  # a group ("credentials": {...}): its entries are looked at one by one
        var = SECRET_NAMES.get(_norm(name))
        if var is None:
            if _SECRETISH.search(name):
                out.skipped.append(f"{origin}: looks like a credential polymm does not use; not copied (value not shown)")
                return True
            return False
        if value is None or value == "":
            out.skipped.append(f"{origin}: empty; {var} left unset")
            return True
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            out.skipped.append(f"{origin}: not a string (value not shown); {var} left unset")
            return True
        text = str(value).strip()
        if "\n" in text or "\r" in text:
            out.skipped.append(f"{origin}: spans several lines (value not shown); {var} left unset")
            return True
        if var in out.secrets and out.secrets[var] != text:
            out.skipped.append(f"{origin}: a second, different {var} (value not shown); the one from "
                               f"{out.secret_origins[var]} is kept")
            return True
        out.secrets[var] = text
        out.secret_origins[var] = origin
        return True

    def take_value(section: str | None, name: str, value: Any, origin: str) -> None:
        n = _norm(name)
        if section is None:
            targets = [names[s][n] for s in ("s1", "s2") if n in names.get(s, {})]
            if len(targets) > 1:
                out.skipped.append(f"{origin}: both strategies have {name} ({' and '.join(targets)}); "
                                   "put it under the strategy's own section (S1 / S2) to migrate it")
                return
            if not targets:
                out.skipped.append(f"{origin}: not a setting polymm knows (no key has this original name)")
                return
            key = targets[0]
        else:
            key = names.get(section, {}).get(n)
            if key is None:
                other = [names[s][n] for s in ("s1", "s2") if s != section and n in names.get(s, {})]
                why = f"{other[0]} has this name, {section} has no such setting" if other else \
                    "not a setting polymm knows (no key has this original name)"
                out.skipped.append(f"{origin}: {why}")
                return
        typed, why = check_value(key, value)
        if why is not None:
            out.skipped.append(f"{origin} = {_plain(value)}: not migrated: {why}")
            return
        if key in seen:
            out.skipped.append(f"{origin}: {key} already set from {seen[key]}; this one is ignored")
            return
        seen[key] = origin
        out.values.append(Mapped(key, typed, origin))

    for name, value in doc.items():
        if take_secret(name, value, name):
            continue
        section = _section_of(name)
        if section is not None:
            if not isinstance(value, dict):
                out.skipped.append(f"{name}: a strategy section that is not an object of settings")
                continue
            for inner, inner_value in value.items():
                origin = f"{name}.{inner}"
                if not take_secret(inner, inner_value, origin):
                    take_value(section, inner, inner_value, origin)
        elif isinstance(value, dict):
            # Credentials are often grouped ("clob": {"api_key": ...}); anything else there is not ours.
            if not value:
                out.skipped.append(f"{name}: an empty group")
            for inner, inner_value in value.items():
                origin = f"{name}.{inner}"
                if not take_secret(inner, inner_value, origin):
                    out.skipped.append(f"{origin}: not under a strategy section (S1 / S2) and not a credential")
        else:
            take_value(None, name, value, name)

    order = {k: i for i, k in enumerate(cfgmod.all_keys())}
    out.values.sort(key=lambda m: order[m.key])
    _validate_whole(out)
    return out


def _validate_whole(out: Migration) -> None:
    """The result as the trader will load it: cross-field rules, then the schema's warnings."""
    try:
        cfg = cfgmod.load_config(None, {m.key: m.value for m in out.values})
    except cfgmod.ConfigError as exc:
        out.problems.append(f"{exc.key}: {exc.reason}" if exc.key else exc.reason)
        return
    out.warnings = cfgmod.warnings(cfg)


# ---------------------------------------------------------------------------------------------------------
# Rendering


def render_toml(m: Migration, source: str) -> str:
    lines = [
        f"# polymm trader configuration, migrated by polymm-migrate from {source}.",
        "# Keys not set here take polymm's defaults (the README's config reference lists every key).",
        "# Secrets never go here: polymm reads them from the environment file.",
    ]
    if m.skipped:
        lines += ["#", "# Not migrated (fix by hand if you need them):"]
        lines += [f"#   {line}" for line in m.skipped]
    if m.problems:
        lines += ["#", "# THIS FILE DOES NOT VALIDATE YET (the trader refuses it until fixed):"]
        lines += [f"#   {line}" for line in m.problems]
    if m.warnings:
        lines += ["#", "# Warnings (legal, but check them):"]
        lines += [f"#   {line}" for line in m.warnings]
    section = ""
    for mapped in m.values:
        sec, name = mapped.key.split(".", 1)
        if sec != section:
            lines += ["", f"[{sec}]"]
            section = sec
        lines.append(f"# from {mapped.origin}")
        lines.append(f"{name} = {cfgmod._toml_value(mapped.value)}")
    return "\n".join(lines) + "\n"


def render_env(m: Migration, source: str) -> str:
    lines = [
        f"# polymm secrets, migrated by polymm-migrate from {source}. Keep this file 0600.",
        "# Installed systems read /etc/polymm/polymm.env: copy these lines there (as root).",
    ]
    for var in ENV_ORDER:
        if var in m.secrets:
            lines.append(f"# from {m.secret_origins[var]}")
            lines.append(f"{var}={m.secrets[var]}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# The command


class MigrateError(Exception):
    """One line for the operator; exit code 2."""


def _write_new(path: Path, text: str, mode: int, force: bool) -> None:
    """Write `text` to `path` created with `mode` from the start (a secret file is never briefly readable)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise MigrateError(f"{path} exists; choose another path or add --force to overwrite it") from None
    except OSError as exc:
        raise MigrateError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), mode)  # an existing file overwritten with --force keeps no looser mode
        f.write(text)


def run(source: Path, toml_path: Path, env_path: Path, force: bool, echo=print) -> int:
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise MigrateError(f"{source}: no such file") from None
    except OSError as exc:
        raise MigrateError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise MigrateError(f"{source}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # The position only: the message quotes no content, which may be a key.
        raise MigrateError(f"{source}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    m = migrate(doc)
    if not m.values and not m.secrets and m.problems:
        raise MigrateError(f"{source}: {m.problems[0]}")
    if toml_path.resolve() == env_path.resolve():
        raise MigrateError("the config file and the environment file must be different files")
    _write_new(toml_path, render_toml(m, str(source)), 0o640, force)
    echo(f"wrote {toml_path}: {len(m.values)} setting(s) migrated"
         + (f", {len(m.skipped)} not (each is a comment at the top of the file, with the reason)" if m.skipped else ""))
    for mapped in m.values:
        echo(f"  {mapped.key:<28} = {cfgmod._toml_value(mapped.value):<30} from {mapped.origin}")
    for line in m.skipped:
        echo(f"  not migrated: {line}")
    if m.secrets:
        _write_new(env_path, render_env(m, str(source)), 0o600, force)
        echo(f"wrote {env_path} (mode 0600): {', '.join(v for v in ENV_ORDER if v in m.secrets)} (values not shown)")
    else:
        echo("no secrets found in the file: no environment file written")
    for w in m.warnings:
        echo(f"warning: {w}")
    if m.problems:
        for p in m.problems:
            echo(f"error: {p}")
        echo(f"{toml_path} does not validate yet: fix it, then check with "
             f"`python -m polymm.trader.config --check {toml_path}`")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="polymm-migrate",
        description="Move the original bot's config.json over: settings into a polymm config.toml (a comment for "
                    "each key that could not be mapped, and why), secrets into an environment file with mode 0600. "
                    "Secret values are never printed.")
    parser.add_argument("config_json", type=Path, help="the original bot's config.json")
    parser.add_argument("--out", type=Path, default=Path("config.toml"), help="config file to write (default: %(default)s)")
    parser.add_argument("--env-out", type=Path, default=Path("polymm.env"),
                        help="environment file for the secrets, created 0600 (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite the output files if they exist")
    args = parser.parse_args(argv)
    try:
        return run(args.config_json, args.out, args.env_out, args.force)
    except MigrateError as exc:
        print(f"polymm-migrate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
