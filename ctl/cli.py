"""mmctl: steer and inspect a running polymm-trader through its control socket.

Every command prints a readable table by default and JSON with `--json`. Errors are one line on stderr
and a non-zero exit code; never a traceback.
"""
from __future__ import annotations

import calendar
import math
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click
import msgspec

from polymm import env
from polymm import series as series_mod
from polymm.ctl import protocol as p
from polymm.ctl import render
from polymm.ctl import series_status
from polymm.ctl import status as status_view
from polymm.ctl.client import DEFAULT_TIMEOUT_S, ControlClient, CtlError, RemoteError, socket_group, timeout_for

# Exit codes (documented in the epilog).
EXIT_OK = 0
EXIT_UNHEALTHY = 1  # status/watch: something needs attention; other commands: the trader refused or failed
EXIT_USAGE = 2  # click's own
PAUSED_AFTER_FLATTEN = "trader paused after flatten; `mmctl resume` to trade again"

EPILOG = f"""\b
Environment: {env.SOCKET} (control socket, default {env.DEFAULT_SOCKET}), {env.SHM} (feed shared
memory, default {env.DEFAULT_SHM}).

\b
Exit codes: 0 ok / healthy; 1 unhealthy (status), refused by the trader, or done only in part (a restart
that did not re-read the config); 2 usage; 3 trader not running; 4 permission denied (join the service's
group); 5 timeout; 6 protocol version mismatch; 7 connection lost; status only: 8 feed down (trader up),
9 paused by an operator and nothing else wrong, 10 trader busy (running, every control slot taken: try again).

\b
Shell completion (add to your shell's rc file):
  bash: eval "$(_MMCTL_COMPLETE=bash_source mmctl)"
  zsh:  eval "$(_MMCTL_COMPLETE=zsh_source mmctl)"
  fish: _MMCTL_COMPLETE=fish_source mmctl | source
"""

SERVICES = {"feed": ["polymm-feed.service"], "trader": ["polymm-trader.service"],
            "all": ["polymm-feed.service", "polymm-trader.service"]}


class Settings:
    """Global options, passed to every command through click's context object."""

    def __init__(self, socket_path: str, shm_name: str, timeout: float, series: str | None = None) -> None:
        self.socket_path = socket_path
        self.shm_name = shm_name
        self.timeout = timeout
        self.series = series  # -m/--market: the series addressed (None: the default series, or all for status)

    def ask(self, request: p.Request) -> p.Reply:
        """One request; slow ones (restart, flatten, ...) wait at least their minimum (client.MIN_TIMEOUT_S)."""
        with ControlClient(self.socket_path, timeout_for(request, self.timeout)) as client:
            return client.request(request)


class MmctlGroup(click.Group):
    """Turns every CtlError into its one line and exit code, for the console script and CliRunner alike."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RemoteError as err:
            line = err.reply.message
            if err.suggestion and err.suggestion not in line:
                line += f" (did you mean {err.suggestion}?)"
            fail(line, err.exit_code)
        except CtlError as err:
            fail(str(err), err.exit_code)


def fail(line: str, code: int = 1) -> None:
    click.echo(f"mmctl: {p.one_line(line)}", err=True)
    raise click.exceptions.Exit(code)


def emit_json(value: Any) -> None:
    click.echo(msgspec.json.encode(value, enc_hook=str, order="sorted").decode())


def as_json(reply: msgspec.Struct) -> dict:
    return p.to_builtins(reply)


json_option = click.option("--json", "as_json_flag", is_flag=True, help="Machine-readable JSON instead of a table.")


@click.group(cls=MmctlGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", envvar=env.SOCKET, default=env.DEFAULT_SOCKET, show_default=True,
              help=f"The trader's control socket [env {env.SOCKET}].")
@click.option("--shm", "shm_name", envvar=env.SHM, default=env.DEFAULT_SHM, show_default=True,
              help=f"The feed's shared-memory segment [env {env.SHM}].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the trader's reply; at least 35 for restart, 15 for flatten, "
                   "cancel-all and pause, 10 for set, unset, reload and resume.")
@click.option("-m", "--market", "series_name", envvar=env.SERIES, default=None, metavar="SERIES",
              help=f"The market series to address (btc-15m, eth-5m, sol-1h, ...) [env {env.SERIES}]: its trader's "
                   "socket and its feed's segment, named from --socket/--shm as the series' services name them "
                   "(trader-eth-5m.sock, poly_tob_shm_eth-5m). Default: btc-15m; `mmctl status` without it shows "
                   "every series running on this host.")
@click.pass_context
def cli(ctx: click.Context, socket_path: str, shm_name: str, timeout: float, series_name: str | None) -> None:
    """Inspect and steer polymm: the feed (shared memory) and the trader (control socket)."""
    settings = Settings(socket_path, shm_name, timeout)
    if series_name:
        try:
            chosen = series_mod.parse(series_name)
        except series_mod.SeriesError as exc:
            fail(str(exc), EXIT_USAGE)
        # The series' own names, derived from the socket and segment given (or the defaults) exactly as its trader
        # and feed derive them: `--socket /tmp/x/trader.sock -m eth-5m` is /tmp/x/trader-eth-5m.sock.
        settings.series = chosen.name
        settings.socket_path = series_mod.socket_path(chosen, socket_path)
        settings.shm_name = series_mod.shm_name(chosen, shm_name)
    ctx.obj = settings


def _series_names(series_filter: str | None, settings: Settings) -> list[str] | None:
    """--series a,b (or -m SERIES) as series names; None = every series."""
    if series_filter:
        try:
            return [s.name for s in series_mod.parse_list(series_filter)]
        except series_mod.SeriesError as exc:
            fail(str(exc), EXIT_USAGE)
    return [settings.series] if settings.series else None


# ---------------------------------------------------------------------------------------------------------
# status / watch


def read_feed(shm_name: str, now: Callable[[], float] = time.time) -> status_view.FeedHealth:
    """Feed health straight from shared memory, so it works whether or not the trader is up."""
    try:
        from polymm.feed import shm  # imported here: numpy is slow to import and only status needs it
    except ImportError as exc:
        return status_view.feed_health(None, now(), problem=f"cannot load the shared-memory reader ({exc})")
    try:
        reader = shm.Reader(shm_name)
    except shm.ShmMissing:
        return status_view.feed_health(
            None, now(), problem=f"no shared-memory segment {shm_name!r}: is polymm-feed running?")
    except shm.LayoutError as exc:
        return status_view.feed_health(None, now(), problem=p.one_line(str(exc)))
    except PermissionError:
        group = socket_group(Path("/dev/shm") / shm_name)
        return status_view.feed_health(None, now(), problem=(
            f"permission denied reading shared memory {shm_name!r}: join group {group} "
            f"(sudo usermod -aG {group} $USER)"))
    except OSError as exc:
        return status_view.feed_health(None, now(), problem=f"cannot read shared memory {shm_name!r}: {exc.strerror or exc}")
    try:
        snapshot = reader.snapshot()
    except Exception as exc:  # noqa: BLE001 - a torn/unknown segment is a feed problem to report, not a crash
        return status_view.feed_health(None, now(), problem=f"cannot read shared memory {shm_name!r}: {p.one_line(str(exc))}")
    finally:
        reader.close()
    return status_view.feed_health(snapshot, now())


def gather_status(settings: Settings) -> status_view.StatusView:
    feed = read_feed(settings.shm_name)
    try:
        reply = settings.ask(p.StatusRequest())
        assert isinstance(reply, p.StatusReply)
        return status_view.build_status(feed, reply, None)
    except RemoteError as err:
        # Every control slot taken: the trader runs and serves others (issue 27: busy is not down).
        return status_view.build_status(feed, None, err.reply.message, busy=err.code == p.E_BUSY)
    except CtlError as err:
        return status_view.build_status(feed, None, str(err), err.exit_code)


@cli.command()
@json_option
@click.pass_obj
def status(settings: Settings, as_json_flag: bool) -> None:
    """Feed and trader health; the exit code says which class.

    The feed part is read straight from shared memory, so it works while the trader is down. Warnings say
    what is wrong in words. For health checks, the worst class wins:

    \b
      0  healthy
      1  unhealthy: both services up, something needs attention (stale book, heartbeats failing, ...)
      9  paused: `mmctl pause` / `flatten` in force and nothing else wrong (`mmctl resume`)
     10  busy: the trader runs but every control slot is taken (it serves others); try again shortly
      8  feed down: no shared memory, feed stopped or its heartbeat too old (the trader answers)
      3  trader down: not running (4 permission denied, 5 timeout, 6 protocol mismatch, 7 connection
         lost: the trader could not be asked, for that reason)

    \b
    Unhealthy (1) includes a config file that no longer loads (the trader runs on the config it last
    loaded; a restart would fail). A window rollover in progress is a note, not a warning.
    """
    overview = gather_overview(settings)
    if overview is not None:  # several series run on this host and none was picked (-m)
        if as_json_flag:
            emit_json(series_status.overview_json(overview))
        else:
            click.echo(series_status.render_overview(overview, time.time()))
        raise click.exceptions.Exit(overview.exit_code)
    view = gather_status(settings)
    if as_json_flag:
        emit_json(status_view.status_json(view))
    else:
        click.echo(status_view.render_status(view, time.time()))
    raise click.exceptions.Exit(view.exit_code)


def gather_overview(settings: Settings) -> series_status.Overview | None:
    """Every series of the host when none is addressed (-m) and more than the default one runs; else None. The
    other series' names are derived from the socket and segment given (--socket/--shm, their variables, or the
    defaults), as the series' own traders and feeds derive them."""
    if settings.series is not None:
        return None
    names = series_status.present(settings.socket_path, settings.shm_name)
    if len(names) < 2:
        return None

    def one(name: str) -> status_view.StatusView:
        s = series_mod.parse(name)
        return gather_status(Settings(series_mod.socket_path(s, settings.socket_path),
                                      series_mod.shm_name(s, settings.shm_name), settings.timeout, series=name))

    return series_status.gather(names, one)


@cli.command()
@click.option("--interval", "-n", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many refreshes.")
@click.option("--json", "as_json_flag", is_flag=True,
              help="Stream one JSON object per refresh, one per line (the same object as `status --json`, "
                   "plus its time).")
@click.pass_obj
def watch(settings: Settings, interval: float, count: int | None, as_json_flag: bool) -> None:
    """`status`, refreshed in place until Ctrl-C."""
    shown = 0
    try:
        while count is None or shown < count:
            overview = gather_overview(settings)
            view = gather_status(settings) if overview is None else None
            now = time.time()
            if as_json_flag:
                # JSON lines: a consumer reads one complete object per line as it comes (flushed at once).
                body = status_view.status_json(view) if view is not None else series_status.overview_json(overview)
                click.echo(msgspec.json.encode({"ts": now, **body}, enc_hook=str, order="sorted").decode())
                sys.stdout.flush()
                shown += 1
                if count is None or shown < count:
                    time.sleep(interval)
                continue
            screen = f"mmctl watch  every {render.number(interval)}s  {render.clock(now, with_date=True)} UTC\n\n"
            screen += (status_view.render_status(view, now) if view is not None
                       else series_status.render_overview(overview, now))
            # Home + clear-to-end instead of a full clear: no flicker on a slow ssh link.
            click.echo("\x1b[H\x1b[2J" + screen if sys.stdout.isatty() else screen + "\n")
            shown += 1
            if count is None or shown < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("")


# ---------------------------------------------------------------------------------------------------------
# config


def entry_source(entry: p.ConfigEntry) -> str:
    """file / override / env / default; a trader that does not say knows at least its overrides."""
    if entry.source:
        return entry.source
    return "override" if entry.override else "-"


def config_rows(entries: list[p.ConfigEntry]) -> list[tuple]:
    rows = []
    for entry in entries:
        flags = []
        if not entry.live:
            flags.append("restart-only")
        if entry.pending_restart:
            flags.append("pending restart")
        rows.append((entry.key, _value(entry.key, entry.value), _value(entry.key, entry.default), entry_source(entry),
                     ", ".join(flags)))
    return rows


def _value(key: str, value: Any) -> str:
    shown = p.redact(key, value)
    if isinstance(shown, float):
        return render.number(shown)
    return render.cell(shown)


def redacted_entries(entries: list[p.ConfigEntry]) -> list[p.ConfigEntry]:
    return [msgspec.structs.replace(e, value=p.redact(e.key, e.value), default=p.redact(e.key, e.default))
            for e in entries]


@cli.command()
@click.argument("key", required=False)
@json_option
@click.pass_obj
def config(settings: Settings, key: str | None, as_json_flag: bool) -> None:
    """Show the effective config (or one KEY, or a SECTION such as s1).

    The source column says where each value comes from: "file" (the config file sets it), "override" (`mmctl
    set`, kept in the state directory), "env" (an environment variable or option), "series" (the series' own
    [series.<name>.<section>] table), "stretched" (a time within the window, stretched from the base to this
    series' window), "default". Secrets are redacted; keys that only change with a restart are flagged
    "restart-only".
    """
    # A bare section name (`mmctl config s1`) shows that section's keys; the trader only knows full keys.
    section = key if key is not None and "." not in key else None
    reply = settings.ask(p.ConfigRequest(key=None if section else key))
    assert isinstance(reply, p.ConfigReply)
    entries = reply.entries
    if section is not None:
        entries = [e for e in entries if e.key.startswith(section + ".")]
        if not entries:
            sections = sorted({e.key.split(".", 1)[0] for e in reply.entries})
            fail(f"unknown config section {section!r}; sections: {', '.join(sections)}")
    reply = msgspec.structs.replace(reply, entries=redacted_entries(entries))
    if as_json_flag:
        emit_json(as_json(reply))
        return
    click.echo(render.table(("key", "value", "default", "source", "flags"), config_rows(reply.entries)))
    footer = []
    if reply.source:
        footer.append(f"file: {reply.source}")
    if reply.overrides_path:
        footer.append(f"overrides: {reply.overrides_path}")
    if footer:
        click.echo("\n" + "   ".join(footer))
    if reply.warnings:
        click.echo("\n" + render.heading("warnings") + "\n" + render.bullets(reply.warnings))


# ---------------------------------------------------------------------------------------------------------
# set / unset / reload


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    """`KEY=VALUE ...`, or one `KEY VALUE` pair (the way people type it: `mmctl set s1.fair_guard true`)."""
    if len(pairs) == 2 and "=" not in pairs[0] and pairs[0].strip():
        return {pairs[0].strip(): pairs[1].strip()}
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE (several KEY=VALUE, or one KEY VALUE pair)",
                                     param_hint="KEY=VALUE")
        if key in settings:
            raise click.BadParameter(f"{key} given twice", param_hint="KEY=VALUE")
        settings[key] = value.strip()
    return settings


def show_change(reply: p.ChangeReply, as_json_flag: bool) -> None:
    reply = msgspec.structs.replace(reply, changes=[
        msgspec.structs.replace(c, old=p.redact(c.key, c.old), new=p.redact(c.key, c.new)) for c in reply.changes])
    if as_json_flag:
        emit_json(as_json(reply))
        return
    if reply.changes:
        click.echo(render.table(None, [(c.key, _value(c.key, c.old), "→", _value(c.key, c.new)) for c in reply.changes]))
    else:
        click.echo("no change")
    if reply.pending_restart:
        click.echo("pending restart (takes effect when the trader restarts): " + ", ".join(reply.pending_restart))
    if reply.message and reply.message != "no change":  # the trader's own "no change" was just said
        click.echo(reply.message)
    if reply.warnings:
        click.echo(render.heading("warnings") + "\n" + render.bullets(reply.warnings))


@cli.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE... | KEY VALUE")
@json_option
@click.pass_obj
def set_(settings: Settings, assignments: tuple[str, ...], as_json_flag: bool) -> None:
    """Change config keys live (all or none).

    The values are validated together against the schema (types, bounds, cross-field rules) and applied
    all or none at the next decision, then persisted as overrides that survive a restart.

    \b
    Example: mmctl set s1.entry_threshold=0.62 risk.max_exposure_usd=80
    """
    reply = settings.ask(p.SetRequest(settings=parse_assignments(assignments)))
    assert isinstance(reply, p.ChangeReply)
    show_change(reply, as_json_flag)


@cli.command()
@click.argument("key")
@json_option
@click.pass_obj
def unset(settings: Settings, key: str, as_json_flag: bool) -> None:
    """Drop an override set with `mmctl set`.

    The file's value (or the default) applies again.
    """
    reply = settings.ask(p.UnsetRequest(key=key))
    assert isinstance(reply, p.ChangeReply)
    show_change(reply, as_json_flag)


@cli.command()
@json_option
@click.pass_obj
def reload(settings: Settings, as_json_flag: bool) -> None:
    """Re-read the config file and overrides.

    On any error the old config stays in force and the error is shown.
    """
    reply = settings.ask(p.ReloadRequest())
    assert isinstance(reply, p.ChangeReply)
    show_change(reply, as_json_flag)


# ---------------------------------------------------------------------------------------------------------
# actions


def show_done(reply: p.Reply, as_json_flag: bool, after: str | None = None) -> None:
    assert isinstance(reply, p.DoneReply)
    if as_json_flag:
        emit_json(as_json(reply))
        return
    click.echo(reply.message)
    if after and not _says_paused(reply.message):  # the trader's own message may already say it
        click.echo(after)
    if reply.warnings:
        click.echo(render.heading("warnings") + "\n" + render.bullets(reply.warnings))


def _says_paused(message: str) -> bool:
    return "stays paused" in message.lower() or "mmctl resume" in message.lower()


def paused_after(reply: p.Reply) -> bool:
    """Whether the trader says it is paused after this command: the `paused` field, or for a trader that
    does not fill it, its message ("... the trader stays paused (mmctl resume to trade again)")."""
    if not isinstance(reply, p.DoneReply):
        return False
    if reply.paused is not None:
        return reply.paused
    return _says_paused(reply.message)


@cli.command()
@json_option
@click.pass_obj
def pause(settings: Settings, as_json_flag: bool) -> None:
    """Kill switch: stop placing orders.

    The trader cancels its working orders and places no new ones until `mmctl resume`.
    """
    show_done(settings.ask(p.PauseRequest()), as_json_flag)


@cli.command()
@json_option
@click.pass_obj
def resume(settings: Settings, as_json_flag: bool) -> None:
    """Resume trading after `pause`."""
    show_done(settings.ask(p.ResumeRequest()), as_json_flag)


@cli.command("cancel-all")
@json_option
@click.pass_obj
def cancel_all(settings: Settings, as_json_flag: bool) -> None:
    """Cancel every working order now.

    Strategies may place new orders at the next decision unless the trader is paused.
    """
    show_done(settings.ask(p.CancelAllRequest()), as_json_flag)


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def flatten(settings: Settings, yes: bool, as_json_flag: bool) -> None:
    """Cancel every order and sell every position at the market."""
    if not yes:
        if not stdin_is_tty():
            fail("flatten sells every position: confirm with --yes (no terminal to ask on)", EXIT_USAGE)
        if not click.confirm("Flatten: cancel all orders and sell every position now?", default=False):
            fail("flatten not confirmed; nothing done", EXIT_UNHEALTHY)
    reply = settings.ask(p.FlattenRequest())
    show_done(reply, as_json_flag, after=PAUSED_AFTER_FLATTEN if paused_after(reply) else None)


def restart_complete(reply: p.Reply) -> bool:
    """Whether the in-process restart did all it says (re-read the config too). An older trader that does not
    fill `complete` says it in its message."""
    if not isinstance(reply, p.DoneReply):
        return True
    return reply.complete and "NOT re-read" not in reply.message


def under_systemd() -> bool:
    """True when systemd is the init system here (the same test sd_booted() makes)."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def restart_services(which: str) -> list[str]:
    if not under_systemd():
        raise CtlError(
            f"cannot restart {' and '.join(SERVICES[which])}: systemd is not running here (no /run/systemd/system); "
            "restart the process yourself, or use `mmctl restart` for the in-process engine restart"
        )
    done = []
    for unit in SERVICES[which]:
        try:
            proc = subprocess.run(["systemctl", "--no-ask-password", "restart", unit], capture_output=True,
                                  text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise CtlError(f"systemctl restart {unit} did not finish within 120 s") from None
        if proc.returncode != 0:
            reason = p.one_line(proc.stderr or proc.stdout or f"exit code {proc.returncode}")
            raise CtlError(f"systemctl restart {unit} failed: {reason}")
        done.append(unit)
    return done


@cli.command()
@click.option("--service", type=click.Choice(sorted(SERVICES)), default=None,
              help="Restart the systemd service(s) instead of the in-process trading engine.")
@json_option
@click.pass_obj
def restart(settings: Settings, service: str | None, as_json_flag: bool) -> None:
    """Restart the trading engine (or a service).

    Without --service: in-process restart of the engine (cancel, reconnect, reconcile, re-read config)
    keeping its state. With --service feed|trader|all: `systemctl restart` of the unit(s).
    """
    if service is None:
        reply = settings.ask(p.RestartRequest())
        show_done(reply, as_json_flag)
        if not restart_complete(reply):
            raise click.exceptions.Exit(EXIT_UNHEALTHY)  # restarted, but not all of it: a script must notice
        return
    units = restart_services(service)
    if as_json_flag:
        emit_json({"restarted": units})
    else:
        click.echo("restarted " + ", ".join(units))


# ---------------------------------------------------------------------------------------------------------
# orders / positions / fills


@cli.command()
@click.option("--all", "include_done", is_flag=True, help="Include filled, cancelled and rejected orders.")
@json_option
@click.pass_obj
def orders(settings: Settings, include_done: bool, as_json_flag: bool) -> None:
    """Our orders, with age and distance from the book.

    Working orders unless --all. "behind" is how far the price is behind the top of the book on the
    order's side, as the exchange displays it with our own orders (0 = at the top). Below the table, for
    each leg where our orders are part of the top: the displayed top and the top without us (what the
    strategies decide on), e.g. "bid 0.61 x 6.55 (ours) → 0.58 x 40 without us".
    """
    reply = settings.ask(p.OrdersRequest(include_done=include_done))
    assert isinstance(reply, p.OrdersReply)
    if as_json_flag:
        emit_json(as_json(reply))
    else:
        click.echo(status_view.orders_table(reply.orders, reply.now or None))
        for line in status_view.book_lines(reply.book):  # where the bot is the market
            click.echo(line)


@cli.command()
@json_option
@click.pass_obj
def positions(settings: Settings, as_json_flag: bool) -> None:
    """Positions per strategy and leg, with P&L."""
    reply = settings.ask(p.PositionsRequest())
    assert isinstance(reply, p.PositionsReply)
    if as_json_flag:
        emit_json(as_json(reply))
        return
    click.echo(status_view.positions_table(reply.positions))
    click.echo(f"\nrealised {render.money(reply.realised_pnl, signed=True)}   "
               f"unrealised {render.money(reply.unrealised_pnl, signed=True)}")


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_since(text: str, now: float) -> float:
    """A point in time from "10m" / "1h30m" / "45s" / "2d" (ago), an ISO time (UTC unless it says otherwise),
    "21:05" (today, UTC) or unix seconds. ValueError with the accepted forms otherwise."""
    value = text.strip()
    match = _DURATION.match(value.lower())
    if value and match and any(match.groups()):
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        return now - (d * 86400 + h * 3600 + m * 60 + s)
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        if number >= 1e9:
            return number
        raise ValueError(f"{text!r}: a bare number must be unix seconds; say 10m for ten minutes ago")
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        value = f"{day}T{value}"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use a duration (30s, 10m, 1h30m, 2d), an ISO time (2026-11-23T21:00, UTC "
            "unless an offset is given), HH:MM (today, UTC) or unix seconds"
        ) from None
    if parsed.tzinfo is None:
        return float(calendar.timegm(parsed.timetuple())) + parsed.microsecond / 1e6
    return parsed.astimezone(timezone.utc).timestamp()


class SinceType(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_since(str(value), time.time())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@cli.command()
@click.option("--since", type=SinceType(), default=None,
              help="Only fills after this: a duration ago (10m, 1h30m) or a time (2026-11-23T21:00, 21:05 UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N fills.")
@json_option
@click.pass_obj
def fills(settings: Settings, since: float | None, limit: int | None, as_json_flag: bool) -> None:
    """Our fills, oldest first."""
    reply = settings.ask(p.FillsRequest(since=since, limit=limit))
    assert isinstance(reply, p.FillsReply)
    if as_json_flag:
        emit_json(as_json(reply))
    else:
        click.echo(status_view.fills_table(reply.fills))


# ---------------------------------------------------------------------------------------------------------
# history (reads the trader's ledger file; works while the trader is down)


@cli.command()
@click.option("--since", type=SinceType(), default=None,
              help="Only windows that started after this: 24h, 7d, a date (2026-11-23) or a time (UTC).")
@click.option("--by", type=click.Choice(["window", "hour", "day", "series"]), default="window", show_default=True,
              help="One row per window, hour, day or market series (hours and days group windows by their start).")
@click.option("--mode", type=click.Choice(["live", "paper", "backtest"]), default=None,
              help="Only fills of this mode (a ledger may hold live and paper runs).")
@click.option("--series", "series_filter", default=None, metavar="SERIES[,SERIES...]",
              help="Only these series (btc-15m, eth-5m, ...; one ledger holds every series of the host); the global "
                   "-m/--market picks one too.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False), default=None,
              help="Ledger file [default: ledger.sqlite in the trader's state directory: "
                   f"{env.STATE_DIR}, else {env.SYSTEMD_STATE_DIR}].")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV rows instead of a table.")
@click.pass_obj
def history(settings: Settings, since: float | None, by: str, mode: str | None, series_filter: str | None,
            ledger_path: str | None, as_json_flag: bool, as_csv: bool) -> None:
    """What each window (hour, day, series) traded and earned, with totals: from the ledger, read-only."""
    from polymm.ctl import history_view
    from polymm.trader.ledger import LedgerReadError, find_path, load_history
    if as_json_flag and as_csv:
        fail("--json and --csv: choose one", EXIT_USAGE)
    wanted = _series_names(series_filter, settings)
    path = Path(ledger_path) if ledger_path else find_path(env.state_dir(), (env.SYSTEMD_STATE_DIR,))
    try:
        result = load_history(path, by=by, since=since, mode=mode, series=wanted)
    except LedgerReadError as err:
        fail(str(err))
    if as_json_flag:
        emit_json(result.as_dict())
    elif as_csv:
        click.echo(history_view.to_csv(result), nl=False)
    else:
        click.echo(history_view.table(result))


# ---------------------------------------------------------------------------------------------------------
# entry point


def main(argv: list[str] | None = None) -> None:
    """The `mmctl` console script: click's own handling, plus a last net so no traceback reaches a user."""
    try:
        code = cli.main(args=argv, prog_name="mmctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mmctl: aborted", err=True)
        code = EXIT_UNHEALTHY
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("", err=True)
        code = 130
    except BrokenPipeError:
        # `mmctl fills | head`: the reader left; nothing to say. Point stdout at devnull so the interpreter's
        # final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OK
    except CtlError as exc:
        click.echo(f"mmctl: {p.one_line(str(exc))}", err=True)
        code = exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the promise is one line, even for our own bugs
        click.echo(f"mmctl: internal error: {type(exc).__name__}: {p.one_line(str(exc))} (please report)", err=True)
        code = 70
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
