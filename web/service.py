"""`polymm-web`: serve the HTTP API and the page (web/app.py) until SIGTERM.

    polymm-web [--listen 127.0.0.1:8780] [--token-file FILE] [--socket PATH] [--ledger FILE] [--allow-remote]
    polymm-web --generate-token FILE [--force]     write a new token (mode 0600) and exit

Refuses to start (exit 2, one line saying why) without a usable token file, or on a non-loopback address unless
--allow-remote says the operator means it (put TLS in front then: README, "Web page and HTTP API").
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from polymm import env
from polymm import logs
from polymm.listen import MetricsError, is_loopback, parse_listen, show
from polymm.notify import Notifier

from . import bearer as tokens

EXIT_USAGE = 2
WATCHDOG_EVERY_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="polymm-web", description="polymm's HTTP API and web page (the original "
                                 "bot's /mm-bot routes) over the trader's control socket and systemd.")
    ap.add_argument("--listen", default=env.get(env.WEB_LISTEN, env.DEFAULT_WEB_LISTEN),
                    help=f"HOST:PORT to listen on [env {env.WEB_LISTEN}, default {env.DEFAULT_WEB_LISTEN}]")
    ap.add_argument("--allow-remote", action="store_true",
                    help="allow a non-loopback listen address (then put TLS in front: a reverse proxy)")
    ap.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="another Host name to answer to (e.g. the reverse proxy's); repeatable")
    ap.add_argument("--token-file", default=None,
                    help=f"the bearer token's file, mode 0600 [env {env.WEB_TOKEN_FILE}; under systemd the unit's "
                         f"credential; else {env.DEFAULT_WEB_TOKEN_FILE}]")
    ap.add_argument("--socket", default=env.get(env.SOCKET, env.DEFAULT_SOCKET),
                    help=f"the trader's control socket [env {env.SOCKET}]")
    ap.add_argument("--ledger", default=None,
                    help="the trader's ledger [default: ledger.sqlite in its state directory, /var/lib/polymm]")
    ap.add_argument("--systemctl", default="systemctl", help=argparse.SUPPRESS)  # tests: a fake systemctl
    ap.add_argument("--generate-token", metavar="FILE", help="write a new random token to FILE (0600) and exit")
    ap.add_argument("--force", action="store_true", help="with --generate-token: replace an existing file")
    ap.add_argument("--log-level", default=env.get(env.LOG_LEVEL, "INFO"), choices=env.LOG_LEVELS,
                    type=str.upper)
    return ap.parse_args(argv)


def token_path(args: argparse.Namespace) -> Path:
    explicit = args.token_file or env.get(env.WEB_TOKEN_FILE)
    return Path(explicit) if explicit else (tokens.default_path() or Path(env.DEFAULT_WEB_TOKEN_FILE))


def listen_address(args: argparse.Namespace) -> tuple[str, int]:
    """The address to bind; ValueError in words for a bad one or a non-loopback one not explicitly allowed."""
    try:
        address = parse_listen(args.listen, source="--listen")
    except MetricsError as exc:
        raise ValueError(str(exc)) from None
    if address is None:
        raise ValueError("--listen off: polymm-web has nothing to do without an address (stop the unit instead)")
    if not is_loopback(address[0]) and not args.allow_remote:
        raise ValueError(f"refusing to listen on {show(address)}: it is not a loopback address, and this service "
                         "can stop the trader; pass --allow-remote if you mean it (and put TLS in front: README)")
    return address


def allowed_hosts(args: argparse.Namespace, host: str) -> set[str] | None:
    from .app import LOOPBACK_NAMES

    extra = {h.strip().lower() for h in args.allowed_host if h.strip()}
    if args.allow_remote and not is_loopback(host) and not extra:
        return None  # reachable under whatever name the operator's network gives it; the token still guards it
    return set(LOOPBACK_NAMES) | extra


def ledger_path(args: argparse.Namespace) -> Path:
    if args.ledger:
        return Path(args.ledger)
    from polymm.trader.ledger import find_path

    return find_path(env.state_dir(), (env.SYSTEMD_STATE_DIR,))


async def serve(args: argparse.Namespace, token: str, address: tuple[str, int], log) -> None:
    from aiohttp import web

    from .app import Api, create_app
    from .pnl import PnlReader
    from .trader_link import TraderLink
    from .units import Systemd

    api = Api(token, TraderLink(args.socket), Systemd(args.systemctl), PnlReader(ledger_path(args)),
              allowed_hosts(args, address[0]))
    runner = web.AppRunner(create_app(api), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, address[0], address[1], reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ValueError(f"cannot listen on {show(address)}: {exc.strerror or exc}") from None
    bound = runner.addresses[0] if runner.addresses else address
    url = f"http://{show((bound[0], bound[1]))}/mm-bot"
    log.info("serving %s (control socket %s, ledger %s)", url, args.socket, api.pnl.path if api.pnl else "-")
    notifier = Notifier()
    notifier.ready(f"serving {url}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            notifier.watchdog()
            try:
                await asyncio.wait_for(stop.wait(), WATCHDOG_EVERY_S)
            except asyncio.TimeoutError:
                pass
    finally:
        notifier.stopping()
        log.info("stopping")
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generate_token:
        try:
            tokens.generate(args.generate_token, force=args.force)
        except (tokens.TokenError, OSError) as exc:
            print(f"polymm-web: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"polymm-web: wrote a new token to {args.generate_token} (mode 0600)")
        return 0
    log = logs.setup("polymm.web", args.log_level)
    try:
        import aiohttp  # noqa: F401 - the optional extra
    except ImportError:
        log.error("polymm-web needs aiohttp: pip install 'polymm[web]'")
        return EXIT_USAGE
    try:
        address = listen_address(args)
        token = tokens.load(token_path(args))
        asyncio.run(serve(args, token, address, log))
    except (ValueError, tokens.TokenError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
