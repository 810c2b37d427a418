"""Checks of this host and the secrets, no network: config, PK, signature type, funder, state directory, ledger,
control socket. Each returns one report.Check (or a few)."""
from __future__ import annotations

import os
import socket as socket_mod
import stat
import tempfile
from pathlib import Path

from polymm import env
from polymm.trader.preflight.context import DEFAULT_ENV_FILE, Context
from polymm.trader.preflight.report import Check, failed, passed, skipped

SYSTEMD_RUNTIME_DIR = "/run/polymm"  # RuntimeDirectory=polymm of the unit: created by systemd at start


def config(ctx: Context) -> Check:
    if ctx.config_error is not None:
        return failed("config", f"the configuration does not load: {ctx.config_error}",
                      "correct the named key (python -m polymm.trader.config --check FILE says the same)")
    where = str(ctx.config_path) if ctx.config_path else "no config file (defaults)"
    note = ""
    if ctx.cfg.mode == "paper":
        note = "; mode is paper: these checks are for the live account you switch to with mode = \"live\""
    return passed("config", f"{where} loads (mode {ctx.cfg.mode}, window {ctx.cfg.market.window_s} s){note}")


def signer_address(ctx: Context) -> str | None:
    """The address of PK, or None when PK is missing or malformed (the reason: `pk`)."""
    pk = ctx.get(env.PK)
    if pk is None:
        return None
    try:
        from eth_account import Account

        return Account.from_key(pk).address
    except Exception:  # noqa: BLE001 - any malformed key: the check says so without echoing it
        return None


def pk(ctx: Context) -> Check:
    raw = ctx.get(env.PK)
    if raw is None:
        why = f"; {ctx.env_file_error}" if ctx.env_file_error else ""
        where = ctx.env_file or "the environment"
        return failed("pk", f"PK is not set (looked in the environment and {where}){why}",
                      f"put PK=<the signing key, 0x + 64 hex> in {DEFAULT_ENV_FILE} (root-only) or the environment")
    body = raw[2:] if raw.lower().startswith("0x") else raw
    if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
        # Never the value, not even its length or a prefix.
        return failed("pk", "PK is set but is not a 32-byte hex key", "PK must be 0x followed by 64 hex digits")
    address = signer_address(ctx)
    if address is None:
        return failed("pk", "PK is set but is not a valid secp256k1 private key (zero or beyond the curve order)",
                      "copy the key again from the wallet it belongs to")
    return passed("pk", f"PK is set and valid; it signs as {address}")


def signature_type(ctx: Context) -> Check:
    from polymm.trader.venue.wallets import WALLET_KINDS

    raw = ctx.get(env.SIGNATURE_TYPE) or "0"
    if ctx.signature_type is None:
        return failed("signature_type", f"SIGNATURE_TYPE={raw!r} is not 0, 1, 2 or 3",
                      "0: the key's own address (EOA), 1: proxy wallet (email/Magic accounts), 2: Safe (browser "
                      "wallet accounts), 3: deposit wallet")
    shown = "" if ctx.get(env.SIGNATURE_TYPE) else " (unset: 0)"
    return passed("signature_type", f"SIGNATURE_TYPE={ctx.signature_type}{shown}: "
                                    f"{WALLET_KINDS[ctx.signature_type]}")


def funder(ctx: Context) -> Check:
    from polymm.trader.venue.wallets import expected_funders, funder_problem

    owner = signer_address(ctx)
    if owner is None or ctx.signature_type is None:
        return skipped("funder", "needs a valid PK and SIGNATURE_TYPE")
    wallet = ctx.get(env.BROWSER_ADDRESS)
    if wallet is not None and not (wallet.startswith("0x") and len(wallet) == 42):
        return failed("funder", f"BROWSER_ADDRESS {wallet!r} is not a 0x-prefixed 20-byte address",
                      "copy the address polymarket.com shows for the account")
    problem = funder_problem(owner, ctx.signature_type, wallet)
    if problem is not None:
        return failed("funder", problem.split("; ", 1)[0],
                      problem.split("; ", 1)[1] if "; " in problem else "set BROWSER_ADDRESS to the expected wallet")
    trades_from = wallet or expected_funders(owner, ctx.signature_type)[0]
    return passed("funder", f"trades from {trades_from}, the wallet the official clients derive for this key and "
                            f"signature type")


def state_dir(ctx: Context) -> Check:
    path = ctx.state_dir
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    if probe is None or not probe.is_dir():
        return failed("state_dir", f"state directory {path} does not exist and cannot be created",
                      "create it, writable by the user the trader runs as (systemd: StateDirectory=polymm)")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".polymm-preflight-"):
            pass
    except OSError as exc:
        return failed("state_dir", f"state directory {path} is not writable by this user ({exc.strerror})",
                      "run as the trader's user (sudo -u polymm) or fix the directory's owner/permissions")
    owner = ""
    if path.exists() and os.geteuid() == 0:
        try:
            import pwd

            owner = f"; owned by {pwd.getpwuid(path.stat().st_uid).pw_name}"
        except (KeyError, OSError):
            pass
    exists = "" if path.exists() else " (created by the trader at start)"
    return passed("state_dir", f"state directory {path} is writable{exists}{owner}")


def ledger(ctx: Context) -> Check:
    from polymm.trader.ledger import default_path
    from polymm.trader.ledger.read import LedgerReadError, open_readonly

    path = default_path(ctx.state_dir)
    if not path.exists():
        return passed("ledger", f"no ledger yet at {path}: the trader creates it at its first start")
    try:
        conn = open_readonly(path)
        try:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except LedgerReadError as exc:
        return failed("ledger", str(exc), "move the file aside (the trader starts a new ledger) or restore it")
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors of a damaged file
        return failed("ledger", f"{path} cannot be opened: {exc}", "move the file aside or restore it from a backup")
    if result != "ok":
        return failed("ledger", f"{path} fails SQLite's integrity check ({result})", "restore it from a backup")
    return passed("ledger", f"ledger {path} opens and passes SQLite's integrity check")


def control_socket(ctx: Context) -> Check:
    path = Path(ctx.socket)
    if path.exists():
        if not stat.S_ISSOCK(path.stat().st_mode):
            return failed("socket", f"{path} exists and is not a socket: the trader cannot listen there",
                          f"remove the file or set {env.SOCKET} elsewhere")
        probe = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            answer = "a trader is running and listening on it: stop it before starting another on this wallet"
            return passed("socket", f"control socket {path}: {answer}")
        except OSError:
            return passed("socket", f"control socket {path} is stale (no trader listens): the trader replaces it")
        finally:
            probe.close()
    parent = path.parent
    if not parent.exists():
        if str(parent) == SYSTEMD_RUNTIME_DIR:
            return passed("socket", f"{parent} is created by systemd when the unit starts (RuntimeDirectory=polymm)")
        return failed("socket", f"the socket's directory {parent} does not exist",
                      f"create it, or set {env.SOCKET} to a path in a directory the trader can write")
    if not os.access(parent, os.W_OK | os.X_OK):
        return failed("socket", f"the socket's directory {parent} is not writable by this user",
                      "run as the trader's user, or fix the directory's permissions")
    return passed("socket", f"control socket {path} can be created")


def run(ctx: Context) -> list[Check]:
    return [config(ctx), pk(ctx), signature_type(ctx), funder(ctx), state_dir(ctx), ledger(ctx),
            control_socket(ctx)]
