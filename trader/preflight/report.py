"""One check's result and how a preflight run is shown. Pure.

A check is critical (trading fails or the trader refuses to start without it) or a warning (something besides
trading fails: redemption, the reference price, the next order version). Its outcome is passed (✔), failed (✘,
with the fix in words) or skipped (–, when an earlier failure makes it meaningless: no valid key, no exchange).
Exit code: 0 when no critical check failed or was skipped, 1 otherwise (the command line's own errors are 2).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

EXIT_READY, EXIT_NOT_READY, EXIT_USAGE = 0, 1, 2
PASS, FAIL, SKIP = "✔", "✘", "–"


@dataclass(frozen=True)
class Check:
    name: str  # stable id (JSON, tests): "pk", "funder", "approval:pusd-exchange-v2"...
    critical: bool
    ok: bool | None  # True passed, False failed, None skipped
    summary: str  # what was found, in words (never a secret)
    fix: str = ""  # what to do when it failed or was skipped

    @property
    def mark(self) -> str:
        return PASS if self.ok else (SKIP if self.ok is None else FAIL)


def passed(name: str, summary: str, critical: bool = True) -> Check:
    return Check(name, critical, True, summary)


def failed(name: str, summary: str, fix: str, critical: bool = True) -> Check:
    return Check(name, critical, False, summary, fix)


def skipped(name: str, why: str, critical: bool = True) -> Check:
    return Check(name, critical, None, f"not checked: {why}")


def ready(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.critical)


def exit_code(checks: list[Check]) -> int:
    return EXIT_READY if ready(checks) else EXIT_NOT_READY


def render_text(checks: list[Check], heading: str) -> str:
    width = max((len(c.name) for c in checks), default=8)
    lines = [heading, ""]
    for title, critical in (("Critical: trading needs these (the trader refuses to start live without the first ones)",
                             True),
                            ("Warnings: trading works without these; something else does not", False)):
        group = [c for c in checks if c.critical is critical]
        if not group:
            continue
        lines.append(title)
        for c in group:
            line = f"  {c.mark} {c.name:<{width}}  {c.summary}"
            if c.ok is not True and c.fix:
                line += f" — fix: {c.fix}"
            lines.append(line)
        lines.append("")
    bad = [c.name for c in checks if c.critical and c.ok is not True]
    warn = [c.name for c in checks if not c.critical and c.ok is False]
    if bad:
        verdict = f"NOT READY: {len(bad)} critical check(s) failed or could not run ({', '.join(bad)})"
    else:
        verdict = "READY for live trading: every critical check passed"
    if warn:
        verdict += f"; {len(warn)} warning(s) ({', '.join(warn)})"
    lines.append(verdict + ".")
    return "\n".join(lines)


def render_json(checks: list[Check], **about) -> str:
    return json.dumps({
        "ready": ready(checks),
        "critical_failed": [c.name for c in checks if c.critical and c.ok is not True],
        "warnings": [c.name for c in checks if not c.critical and c.ok is False],
        **about,
        "checks": [dict(asdict(c), state="passed" if c.ok else ("skipped" if c.ok is None else "failed"))
                   for c in checks],
    }, indent=1)
