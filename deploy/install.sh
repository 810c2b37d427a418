#!/usr/bin/env bash
# Install (or remove) polymm as two systemd services on a Debian-like host. Run as root. Idempotent: a re-run
# that finds the same source (or wheels), units and files changes nothing and says so; after a change it installs
# only what changed (new code into the venv, changed units) and never overwrites a file in /etc/polymm.
#
#   deploy/install.sh                      install from this source tree (pip fetches the dependencies)
#   deploy/install.sh --wheels DIR         install offline from a wheel directory (pip wheel -w DIR .)
#   deploy/install.sh --uninstall          stop and remove units, venv, mmctl link and the polymm user;
#                                          keeps /etc/polymm and /var/lib/polymm
#   deploy/install.sh --uninstall --purge  ... and removes /etc/polymm and /var/lib/polymm too
# Options: --source DIR (another source tree), --no-enable (do not enable the units for boot),
#          --dry-run (say what would change, change nothing; needs no root).
#
# What it sets up:
#   user/group polymm (system user, no login, no home)    /opt/polymm            venv with polymm
#   /etc/polymm/config.toml   root:polymm 0640 (example)   /usr/local/bin/mmctl   -> /opt/polymm/bin/mmctl
#   /etc/polymm/polymm.env    root:root   0600 (secrets)   /etc/systemd/system/polymm-{feed,trader}.service
#   /etc/polymm/notify.env    root:root   0600 (failure notice command)  /etc/systemd/system/polymm-notify@.service
#   /etc/polymm/web.token     root:root   0600 (polymm-web's bearer token)  /etc/systemd/system/polymm-web.service
#   user polymm-web (the page's service, in group polymm)  /etc/polkit-1/rules.d/50-polymm-web.rules (if polkitd)
# Existing /etc/polymm files are never overwritten. The services are not started. They are enabled (started at
# boot) once the trader can start: polymm.env holds the signing key, or config.toml says mode = "paper" (paper
# trading needs no key). Until then a reboot would start a trader that exits at once; the script prints the one
# command to enable them after filling it in. polymm-web (the page and HTTP API) is
# installed but never enabled by this script: `systemctl enable --now polymm-web` when you want it.
set -euo pipefail

PREFIX=/opt/polymm
ETC=/etc/polymm
STATE=/var/lib/polymm
UNIT_DIR=/etc/systemd/system
UNITS=(polymm-feed.service polymm-trader.service)
# One feed and trader per further market series (polymm-feed@eth-5m, polymm-trader@eth-5m; README "Several series
# on one wallet"): installed, never enabled here; an operator enables the instances it wants.
SERIES_UNITS=(polymm-feed@.service polymm-trader@.service)
NOTIFY_UNIT=polymm-notify@.service
WEB_UNIT=polymm-web.service  # off by default: installed, never enabled here
WEB_USER=polymm-web
WEB_TOKEN="$ETC/web.token"
POLKIT_RULES=/etc/polkit-1/rules.d
WEB_RULE=50-polymm-web.rules
NOTIFY_BIN="$PREFIX/libexec/polymm-notify"
STAMP="$PREFIX/.polymm-install-stamp"  # what the venv was last installed from (a hash): re-runs skip pip
USER_NAME=polymm
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$(dirname "$HERE")"

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; }

WHEELS="" UNINSTALL=0 PURGE=0 ENABLE=1 DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || die "--wheels needs a directory"; WHEELS="$2"; shift 2 ;;
        --wheels=*) WHEELS="${1#*=}"; shift ;;
        --source) [ $# -ge 2 ] || die "--source needs a directory"; SOURCE="$2"; shift 2 ;;
        --source=*) SOURCE="${1#*=}"; shift ;;
        --no-enable) ENABLE=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only goes with --uninstall"
[ "$DRY" = 1 ] || [ "$(id -u)" = 0 ] || die "run as root (it creates a system user and installs systemd units)"
[ "$DRY" = 0 ] || say "dry run: nothing is changed; each line says what a real run would do"

# act CMD...: run a command that changes the host, or in a dry run only say it would.
act() { if [ "$DRY" = 1 ]; then say "  would run: $*"; else "$@"; fi; }
# act_quiet CMD...: the same, the command's own output and failure swallowed (a dry run still says it).
act_quiet() { if [ "$DRY" = 1 ]; then say "  would run: $*"; else "$@" >/dev/null 2>&1 || true; fi; }
# did WORDS: what a real run just did (a dry run's "would run" line already said it).
did() { [ "$DRY" = 1 ] || say "$@"; }

# Temporary files and directories, removed however the script ends.
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

# systemctl talks to a running systemd only when there is one (not in a chroot or an image build).
systemd_running() { [ -d /run/systemd/system ]; }

# ------------------------------------------------------------------------------------------------ uninstall

series_instances() {  # every polymm-{trader,feed}@<series> instance systemd knows or has enabled, traders first
    local kind
    for kind in trader feed; do
        { systemctl list-units --all --plain --no-legend "polymm-$kind@*.service" 2>/dev/null | awk '{print $1}'
          ls "$UNIT_DIR"/*.wants/ 2>/dev/null | grep -E "^polymm-$kind@.+\.service$"; } | sort -u
    done
}

uninstall() {
    if systemd_running; then
        # Traders first: their SIGTERM path cancels our open orders while the feeds still run.
        for unit in $(series_instances); do
            act_quiet systemctl disable --now "$unit"
            did "stopped and disabled $unit"
        done
        for unit in "$WEB_UNIT" polymm-trader.service polymm-feed.service; do
            if [ -e "$UNIT_DIR/$unit" ]; then
                act_quiet systemctl disable --now "$unit"
                did "stopped and disabled $unit"
            fi
        done
    fi
    for unit in "${UNITS[@]}" "${SERIES_UNITS[@]}" "$NOTIFY_UNIT" "$WEB_UNIT"; do
        [ -e "$UNIT_DIR/$unit" ] && { act rm -f "$UNIT_DIR/$unit"; did "removed $UNIT_DIR/$unit"; }
        if [ "$PURGE" = 1 ] && [ -d "$UNIT_DIR/$unit.d" ]; then
            act rm -rf "$UNIT_DIR/$unit.d"; did "removed drop-ins $UNIT_DIR/$unit.d"
        fi
    done
    if systemd_running; then
        act systemctl daemon-reload
        act_quiet systemctl reset-failed "${UNITS[@]}"
    fi
    if [ -L /usr/local/bin/mmctl ] && [ "$(readlink /usr/local/bin/mmctl)" = "$PREFIX/bin/mmctl" ]; then
        act rm -f /usr/local/bin/mmctl; did "removed /usr/local/bin/mmctl"
    fi
    [ -d "$PREFIX" ] && { act rm -rf "$PREFIX"; did "removed $PREFIX"; }
    # The feeds' segments and the wallets' shared records are runtime state of a user about to disappear; a
    # reinstall creates them afresh.
    for f in /dev/shm/poly_tob_shm /dev/shm/poly_tob_shm_* /dev/shm/polymm-wallet-*; do
        [ -e "$f" ] && { act rm -f "$f"; did "removed $f"; }
    done
    [ -e "$POLKIT_RULES/$WEB_RULE" ] && { act rm -f "$POLKIT_RULES/$WEB_RULE"; did "removed $POLKIT_RULES/$WEB_RULE"; }
    if getent passwd "$WEB_USER" >/dev/null; then act userdel "$WEB_USER"; did "removed user $WEB_USER"; fi
    if getent group "$WEB_USER" >/dev/null; then act groupdel "$WEB_USER"; fi
    if getent passwd "$USER_NAME" >/dev/null; then act userdel "$USER_NAME"; did "removed user $USER_NAME"; fi
    if getent group "$USER_NAME" >/dev/null; then act groupdel "$USER_NAME"; did "removed group $USER_NAME"; fi
    if [ "$PURGE" = 1 ]; then
        act rm -rf "$ETC" "$STATE" /run/polymm
        did "purged $ETC and $STATE"
    else
        [ -d "$ETC" ] && say "kept $ETC (config, secrets) and $STATE (overrides, state): --purge removes them"
    fi
    if [ "$DRY" = 1 ]; then say "dry run: nothing was removed"; else say "uninstalled"; fi
}

if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi

# ------------------------------------------------------------------------------------------------ install

for unit in "${UNITS[@]}" "${SERIES_UNITS[@]}" "$NOTIFY_UNIT" "$WEB_UNIT"; do
    [ -f "$HERE/systemd/$unit" ] || die "missing $HERE/systemd/$unit (run the script from the polymm source tree)"
done
[ -f "$HERE/polymm-notify" ] || die "missing $HERE/polymm-notify (run the script from the polymm source tree)"
command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-venv)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); polymm needs 3.11 or newer"
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || die "--wheels $WHEELS: no such directory"
    ls "$WHEELS"/polymm-*.whl >/dev/null 2>&1 || die "--wheels $WHEELS has no polymm-*.whl (build: pip wheel -w $WHEELS .)"
else
    [ -f "$SOURCE/pyproject.toml" ] || die "no pyproject.toml in $SOURCE: use --wheels DIR or --source DIR"
fi

changes=0  # what this run changed; 0 at the end = the re-run was a no-op, and it says so
code_changed=0
changed() { changes=$((changes + 1)); if [ "$DRY" = 1 ]; then say "would have $*"; else say "$@"; fi; }

# 1. user and group: a system user (uid below 1000) — logind's RemoveIPC= never touches those, so the feed's
#    shared-memory segment is not deleted behind our back.
if ! getent group "$USER_NAME" >/dev/null; then
    act groupadd --system "$USER_NAME"; changed "created group $USER_NAME"
fi
if ! getent passwd "$USER_NAME" >/dev/null; then
    act useradd --system --gid "$USER_NAME" --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
        --comment "polymm market maker" "$USER_NAME"
    changed "created system user $USER_NAME"
fi
# polymm-web's own user: in group polymm (the control socket, the ledger), nothing else of polymm's.
if ! getent passwd "$WEB_USER" >/dev/null; then
    act useradd --system --user-group --groups "$USER_NAME" --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "polymm web page" "$WEB_USER"
    changed "created system user $WEB_USER (in group $USER_NAME)"
fi

# 2. the venv, owned by root: the services can run it but not modify it.
if [ ! -x "$PREFIX/bin/python" ] || ! "$PREFIX/bin/python" -c 'import sys' 2>/dev/null; then
    act python3 -m venv --clear "$PREFIX" || die "python3 -m venv failed (apt-get install python3-venv)"
    act rm -f "$STAMP"
    changed "created venv $PREFIX"
fi
# What would be installed, as one hash: the wheels' bytes, or the source tree's files (names and contents, not
# their times). Equal to the stamp of the last install (and the venv imports polymm) = nothing to do.
if [ -n "$WHEELS" ]; then
    wanted="wheels $( (cd "$WHEELS" && sha256sum -- *.whl) | sha256sum | cut -c1-32)"
else
    wanted="source $(tar -C "$SOURCE" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
        --exclude='__pycache__' --exclude=.pytest_cache --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -cf - . | sha256sum | cut -c1-32)"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] \
        && "$PREFIX/bin/python" -c 'import polymm.trader, polymm.feed' 2>/dev/null; then
    say "polymm in $PREFIX is already what ${WHEELS:-$SOURCE} holds: pip skipped"
elif [ "$DRY" = 1 ]; then
    changed "installed polymm from ${WHEELS:-source $SOURCE} into $PREFIX with pip"; code_changed=1
else
    # pip prints each package as it collects and installs it: a fresh host spends a network-bound minute here.
    say "installing polymm and its dependencies with pip into $PREFIX (a minute or so on a fresh host) ..."
    PIP=("$PREFIX/bin/python" -m pip --disable-pip-version-check --no-input)
    pip_log="$(mktemp)"; cleanup+=("$pip_log")
    # pip's own progress lines (one per package), prefixed; all of its output when it fails.
    run_pip() {
        if ! "${PIP[@]}" install --progress-bar off "$@" 2>&1 | tee "$pip_log" \
                | sed -u -n 's/^\(Collecting\|Processing\|Downloading\|Building\|Installing\|Successfully\) /install:   pip: \1 /p'; then
            tail -n 40 "$pip_log" >&2
            die "pip install failed (its last lines are above)"
        fi
    }
    if [ -n "$WHEELS" ]; then
        # --upgrade: a newer polymm in DIR brings its new or newer dependencies along.
        run_pip --upgrade --no-index --find-links "$WHEELS" polymm
        # Same version number, new build (a redeploy): reinstall polymm itself so the venv runs what DIR holds.
        run_pip --no-index --find-links "$WHEELS" --no-deps --force-reinstall polymm
        # The redemption extra when DIR carries it (pip wheel -w DIR '.[redeem]').
        if ls "$WHEELS"/py_builder_relayer_client-*.whl >/dev/null 2>&1; then
            run_pip --no-index --find-links "$WHEELS" 'polymm[redeem]'
        fi
        # polymm-web's extra when DIR carries it (pip wheel -w DIR '.[web]').
        if ls "$WHEELS"/aiohttp-*.whl >/dev/null 2>&1; then
            run_pip --no-index --find-links "$WHEELS" 'polymm[web]'
        fi
        changed "installed polymm from wheels in $WHEELS"; code_changed=1
    else
        # Build from a copy: pip builds in the source directory, which may be read-only or someone's checkout.
        build="$(mktemp -d)"
        cleanup+=("$build")
        tar -C "$SOURCE" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' -cf - . \
            | tar -C "$build" -xf -
        run_pip "$build[redeem,web]"  # with the relayer client (automatic redemption) and polymm-web
        changed "installed polymm from source $SOURCE"; code_changed=1
    fi
    printf '%s\n' "$wanted" >"$STAMP"
fi
if [ -x "$PREFIX/bin/python" ] && version="$("$PREFIX/bin/python" -c 'from importlib.metadata import version; print(version("polymm"))' 2>/dev/null)"; then
    say "polymm $version in $PREFIX"
fi

# 3. mmctl on the PATH; the failure-notice helper polymm-notify@.service runs.
if [ "$(readlink /usr/local/bin/mmctl 2>/dev/null)" != "$PREFIX/bin/mmctl" ]; then
    act ln -sfn "$PREFIX/bin/mmctl" /usr/local/bin/mmctl
    changed "linked /usr/local/bin/mmctl"
fi
if ! cmp -s "$HERE/polymm-notify" "$NOTIFY_BIN"; then
    act install -D -m 0755 "$HERE/polymm-notify" "$NOTIFY_BIN"
    changed "installed $NOTIFY_BIN"
fi

# 4. /etc/polymm: config readable by the service group, secrets by root only. Never overwrite an operator's file.
[ -d "$ETC" ] || changes=$((changes + 1))
act install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ ! -e "$ETC/config.toml" ] && [ "$DRY" = 1 ]; then
    changed "wrote $ETC/config.toml (every key with its default)"
elif [ ! -e "$ETC/config.toml" ]; then
    tmp="$(mktemp "$ETC/.config.toml.XXXXXX")"; cleanup+=("$tmp")
    if "$PREFIX/bin/python" -m polymm.trader.config --example-toml >"$tmp" 2>/dev/null && [ -s "$tmp" ]; then
        changed "wrote $ETC/config.toml (every key with its default; edit, then: systemctl reload polymm-trader)"
    else
        # Fallback when this build cannot print the example: an empty file means "all defaults".
        cat >"$tmp" <<'EOF'
# polymm trader configuration (TOML). Every key is optional; missing keys take their defaults.
# All keys, defaults and bounds: /opt/polymm/bin/python -m polymm.trader.config --markdown-reference
# Live changes: `mmctl set s1.entry_threshold=0.42` (kept in /var/lib/polymm, this file is never rewritten).
EOF
        changed "wrote $ETC/config.toml (defaults only: this build has no --example-toml)"
    fi
    chown root:"$USER_NAME" "$tmp"; chmod 0640 "$tmp"; mv "$tmp" "$ETC/config.toml"
else
    say "kept existing $ETC/config.toml"
    # After an uninstall + reinstall the group may be a new gid: the trader must still be able to read the file.
    if [ "$(stat -c %G "$ETC/config.toml")" != "$USER_NAME" ]; then
        act chgrp "$USER_NAME" "$ETC/config.toml"; changed "gave $ETC/config.toml to group $USER_NAME (the trader reads it)"
    fi
fi
if [ ! -e "$ETC/polymm.env" ] && [ "$DRY" = 1 ]; then
    changed "wrote $ETC/polymm.env (0600; fill in PK, BROWSER_ADDRESS, SIGNATURE_TYPE before starting a live trader)"
elif [ ! -e "$ETC/polymm.env" ]; then
    tmp="$(mktemp "$ETC/.polymm.env.XXXXXX")"; cleanup+=("$tmp")  # 0600 from the start: never readable
    cat >"$tmp" <<'EOF'
# polymm environment: the wallet secrets and endpoint overrides, read by systemd (as root) for both services.
# Keep this file root:root 0600. The feed never sees the secrets (UnsetEnvironment= in its unit).
# After editing: systemctl restart polymm-trader  (a reload does not re-read this file)

# Required by the trader (uncomment and fill in):
# the signing key of the wallet, hex
#PK=0x<64 hex digits>
# the funder wallet that holds pUSD and shares: your Polymarket proxy/Safe/deposit wallet, or the PK's own address
#BROWSER_ADDRESS=0x<40 hex digits>
# 0 = EOA (BROWSER_ADDRESS is the PK's address), 1 = email/Magic proxy, 2 = browser wallet proxy (Gnosis Safe),
# 3 = deposit wallet (every account created since 2026-05-04; see README, "Going live")
#SIGNATURE_TYPE=0

# CLOB API credentials. Optional: derived from PK at start when absent.
#POLY_API_KEY=
#POLY_API_SECRET=
#POLY_PASSPHRASE=

# Builder API credentials for automatic redemption through Polymarket's gasless relayer (signature types 1-3;
# see README, "Redemption"). Without them the trader only warns when positions are redeemable.
#BUILDER_API_KEY=
#BUILDER_SECRET=
#BUILDER_PASS_PHRASE=

# Endpoints: Polymarket production when unset. Point all of them at a polymm-sim to rehearse without money
# (its ready file lists each URL).
#POLYMM_GAMMA_URL=https://gamma-api.polymarket.com
#POLYMM_CLOB_URL=https://clob.polymarket.com
#POLYMM_WS_MARKET_URL=wss://ws-subscriptions-clob.polymarket.com/ws/market
#POLYMM_WS_USER_URL=wss://ws-subscriptions-clob.polymarket.com/ws/user
#POLYMM_RTDS_URL=wss://ws-live-data.polymarket.com
#POLYMM_DATA_URL=https://data-api.polymarket.com
#POLYMM_RELAYER_URL=https://relayer-v2.polymarket.com

# Log level of both services (DEBUG, INFO, WARNING, ERROR); POLYMM_FEED_LOG_LEVEL for the feed alone.
#POLYMM_LOG_LEVEL=INFO

# Prometheus endpoints (README "Monitoring"), loopback by default; HOST:PORT or off. The trader's is also
# metrics.listen in config.toml (this variable wins).
#POLYMM_FEED_METRICS=127.0.0.1:9891
#POLYMM_TRADER_METRICS=127.0.0.1:9892
EOF
    chown root:root "$tmp"; chmod 0600 "$tmp"; mv "$tmp" "$ETC/polymm.env"
    changed "wrote $ETC/polymm.env (fill in PK, BROWSER_ADDRESS, SIGNATURE_TYPE before starting the trader)"
else
    say "kept existing $ETC/polymm.env"
    mode="$(stat -c %a "$ETC/polymm.env")"
    [ "$mode" = 600 ] || [ "$mode" = 400 ] \
        || say "WARNING: $ETC/polymm.env is mode $mode; it holds secrets: chmod 0600 $ETC/polymm.env"
fi

if [ ! -e "$ETC/notify.env" ] && [ "$DRY" = 1 ]; then
    changed "wrote $ETC/notify.env (0600)"
elif [ ! -e "$ETC/notify.env" ]; then
    tmp="$(mktemp "$ETC/.notify.env.XXXXXX")"; cleanup+=("$tmp")
    cat >"$tmp" <<'EOF'
# polymm failure notice: the command polymm-notify@.service runs (as user polymm, under /bin/sh) when
# polymm-feed or polymm-trader fails for good: the trader's exit 2 (bad config, missing secrets, a second trader
# on the wallet) is never restarted, and a crash loop stops after its restart limit. Unset: the failure is only
# in the journal. Root-only (0600): a webhook URL is a secret. Try it: systemctl start polymm-notify@test.service
# The command sees POLYMM_NOTIFY_TEXT (one line: what failed, where, how to read why), POLYMM_NOTIFY_JSON
# ({"text": ...} for chat webhooks), POLYMM_NOTIFY_UNIT and POLYMM_NOTIFY_HOST. Example (Slack/Mattermost):
#POLYMM_NOTIFY_COMMAND=curl -fsS -m 10 -H 'Content-Type: application/json' -d "$POLYMM_NOTIFY_JSON" https://hooks.slack.com/services/T000/B000/XXXX
EOF
    chown root:root "$tmp"; chmod 0600 "$tmp"; mv "$tmp" "$ETC/notify.env"
    changed "wrote $ETC/notify.env (set POLYMM_NOTIFY_COMMAND to hear about a failed service)"
fi

# 4b. polymm-web: its bearer token (root-only: the unit passes it to the service as a credential) and the polkit
#     rule that lets its user start/stop/restart polymm-feed and polymm-trader, nothing else.
if [ ! -e "$WEB_TOKEN" ]; then
    act "$PREFIX/bin/polymm-web" --generate-token "$WEB_TOKEN" >/dev/null || die "could not write $WEB_TOKEN"
    act chown root:root "$WEB_TOKEN"
    changed "wrote $WEB_TOKEN (polymm-web's bearer token; read it with: sudo cat $WEB_TOKEN)"
else
    mode="$(stat -c %a "$WEB_TOKEN")"
    [ "$mode" = 600 ] || [ "$mode" = 400 ] \
        || say "WARNING: $WEB_TOKEN is mode $mode; whoever reads it can stop the trader: chmod 0600 $WEB_TOKEN"
fi
if [ -d "$POLKIT_RULES" ]; then
    if ! cmp -s "$HERE/polkit/$WEB_RULE" "$POLKIT_RULES/$WEB_RULE"; then
        act install -m 0644 "$HERE/polkit/$WEB_RULE" "$POLKIT_RULES/$WEB_RULE"
        changed "installed $POLKIT_RULES/$WEB_RULE (polymm-web may start/stop/restart polymm-feed and polymm-trader)"
    fi
else
    say "note: no $POLKIT_RULES (polkitd is not installed): polymm-web shows status and steers the trader, but its"
    say "      Start/Stop/Restart need polkit: apt-get install polkitd, then re-run this script"
fi

# 5. units.
units_changed=0
for unit in "${UNITS[@]}" "${SERIES_UNITS[@]}" "$NOTIFY_UNIT" "$WEB_UNIT"; do
    if ! cmp -s "$HERE/systemd/$unit" "$UNIT_DIR/$unit"; then
        act install -m 0644 "$HERE/systemd/$unit" "$UNIT_DIR/$unit"
        units_changed=1
        changed "installed $UNIT_DIR/$unit"
    fi
done
if systemd_running && [ "$units_changed" = 1 ]; then
    act systemctl daemon-reload
fi
# Enabled = started at boot. Only once the trader can start: with its key, or in paper mode (no key needed). A live
# trader without PK exits 2 and stays failed, so enabling before would make every reboot a failure. Units an
# operator (or an earlier run) enabled stay enabled.
enable_cmd="systemctl enable --now ${UNITS[*]}"
has_secrets() { grep -Eq '^[[:space:]]*PK=[^[:space:]]' "$ETC/polymm.env" 2>/dev/null; }
# The trader's own reading of config.toml (`mode`, top level): a paper-only host has no PK and needs none.
paper_mode() {
    [ -r "$ETC/config.toml" ] && [ -x "$PREFIX/bin/python" ] && "$PREFIX/bin/python" -c '
import sys
from polymm.trader.config import load_config
sys.exit(0 if load_config(sys.argv[1]).mode == "paper" else 1)' "$ETC/config.toml" 2>/dev/null
}
can_start() { has_secrets || paper_mode; }
all_enabled() {  # `systemctl is-enabled A B` succeeds when either is: ask for each
    local unit
    for unit in "${UNITS[@]}"; do systemctl is-enabled --quiet "$unit" 2>/dev/null || return 1; done
}
if all_enabled; then
    : # already enabled: nothing to do
elif [ "$ENABLE" = 0 ]; then
    say "not enabled (--no-enable); to start them now and at every boot: $enable_cmd"
elif can_start; then
    act systemctl enable "${UNITS[@]}" >/dev/null 2>&1 || act systemctl enable "${UNITS[@]}"
    changed "enabled ${UNITS[*]} (they start at boot)$(has_secrets || echo ': paper trading, no key needed')"
else
    say "not enabled yet: $ETC/polymm.env has no PK, and a live trader without its key exits at once"
    say "after filling it in (or with mode = \"paper\" at the top of $ETC/config.toml: paper trading needs no key),"
    say "start them now and at every boot with: $enable_cmd"
fi

# 6. what next.
running=()
if systemd_running; then
    for unit in "${UNITS[@]}"; do systemctl is-active --quiet "$unit" && running+=("${unit%.service}"); done
fi
if [ "${#running[@]}" -gt 0 ]; then
    if [ "$units_changed" = 1 ] || [ "$code_changed" = 1 ]; then
        say "running services keep the code and units they started with until: systemctl restart ${running[*]}"
    fi
elif can_start; then
    say "next: systemctl start polymm-feed polymm-trader; mmctl status"
else
    say "next: fill in $ETC/polymm.env, then: $enable_cmd; mmctl status"
fi
if [ "$changes" != 0 ] && [ "$units_changed" = 1 ]; then
    say "more market series on this wallet: systemctl enable --now polymm-trader@eth-5m (its feed starts with it; see README)"
fi
if ! systemctl is-enabled --quiet "$WEB_UNIT" 2>/dev/null; then
    say "the web page and HTTP API (off): systemctl enable --now $WEB_UNIT; then open http://127.0.0.1:8780/mm-bot"
fi
if [ "$changes" = 0 ]; then
    say "nothing changed: the same polymm, units and files were already installed"
elif [ "$DRY" = 1 ]; then
    say "dry run: the $changes change(s) above would be made; nothing was changed"
fi
