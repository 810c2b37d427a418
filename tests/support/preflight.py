"""Helpers for the preflight tests: `polymm-preflight` as a real process against a running sim, for a fresh wallet
of a given signature type."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from polymm import env
from polymm.demo import demo_config
from polymm.sim.testing import new_wallet
from polymm.trader.venue.wallets import expected_funders

WINDOW_S = 60


@dataclass
class Account:
    sim: object
    workdir: Path
    signature_type: int = 2
    rpc: bool = True
    pk: str = ""
    owner: str = ""
    funder: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pk, self.owner = new_wallet()
        self.funder = expected_funders(self.owner, self.signature_type)[0]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "config.toml"
        self.config.write_text(demo_config(WINDOW_S))

    def env(self, **extra: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith(("POLYMM_", "BUILDER_", "POLY_"))
               and k not in (env.PK, env.BROWSER_ADDRESS, env.SIGNATURE_TYPE)}
        out.update(self.sim.env())
        out.update(self.sim.builder_env())
        out.update({env.PK: self.pk, env.SIGNATURE_TYPE: str(self.signature_type), env.CONFIG: str(self.config),
                    env.WINDOW_S: str(WINDOW_S), env.STATE_DIR: str(self.workdir / "state"),
                    env.SOCKET: str(self.workdir / "trader.sock")})
        if self.signature_type:
            out[env.BROWSER_ADDRESS] = self.funder
        if self.rpc:
            out[env.RPC_URL] = self.sim.urls["rpc_url"]
        out.update(self.extra)
        out.update(extra)
        return {k: v for k, v in out.items() if v is not None}

    def run(self, *args: str, input_text: str | None = None, env_file: str = "/dev/null",
            **extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "polymm.trader.preflight.cli", "--env-file", env_file, "--timeout", "3",
                   *args]
        return subprocess.run(command, env=self.env(**extra), capture_output=True, text=True, timeout=120,
                              input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL)

    def json(self, *args: str, **extra: str) -> tuple[int, dict]:
        done = self.run("--json", *args, **extra)
        assert done.stderr == "", done.stderr
        return done.returncode, json.loads(done.stdout)


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def line(stdout: str, name: str) -> str:
    """The check line of `name` in the text output."""
    for text in stdout.splitlines():
        parts = text.split()
        if len(parts) >= 2 and parts[1] == name:
            return text
    raise AssertionError(f"no line for {name} in:\n{stdout}")
