"""A Debian rootfs booted under a real systemd in systemd-nspawn, driven with nsenter.

Used by tests/e2e/test_systemd_e2e.py; also usable by hand (`python tests/e2e/systemd/nspawn_box.py --help`).
Everything here was needed on machines whose PID 1 is not systemd, with no machined and no dbus on the host
(see shared/design/systemd-e2e.md):

- `--register=no --keep-unit`: nspawn cannot register with machined; it then creates the container's cgroups below
  the cgroup it runs in, so it is started from a dedicated cgroup we create and remove ourselves.
- `machinectl` / `systemctl -M` do not work without machined: commands run through `nsenter --all` into the
  container's init.
- `--volatile=overlay`: the cached rootfs is mounted read-only under a tmpfs, so every boot starts clean and the
  cache is never modified.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/polymm-e2e")
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv")
# Installed with apt in the debootstrapped tree afterwards: debootstrap's own configuration stage fails on polkitd.
# polkitd: polymm-web's user starts/stops the services through systemd's D-Bus API, which asks polkit
# (deploy/polkit/50-polymm-web.rules).
EXTRA_PACKAGES = ("polkitd",)
# The stamp holds the recipe: a changed recipe rebuilds the cached rootfs instead of reusing a stale one.
STAMP = ".polymm-e2e-rootfs"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BoxError(Exception):
    """The container could not be built, booted or driven; the message says which step and why."""


def _host_path() -> str:
    """PATH with the sbin directories: a CI PATH may lack them, and debootstrap (and the chroot it runs) live there."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def tool(name: str) -> str | None:
    """Full path of a host tool, or None."""
    return shutil.which(name, path=_host_path())


def cache_dir() -> Path:
    return Path(os.environ.get("POLYMM_E2E_CACHE") or DEFAULT_CACHE)


def why_unusable() -> str | None:
    """None if this machine can run the container, else the precise reason (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, cgroups, nsenter); CI runs it as root"
    missing = [t for t in ("systemd-nspawn", "debootstrap", "nsenter") if tool(t) is None]
    if missing:
        return (f"missing {', '.join(missing)}: apt-get install --no-install-recommends systemd-container "
                "debootstrap util-linux (.ci/run does this)")
    if not _cgroup_roots():
        return "no writable cgroup hierarchy found in /proc/self/mountinfo"
    return None


# ----------------------------------------------------------------------------------------------- rootfs


def _recipe() -> str:
    mirror = os.environ.get("POLYMM_E2E_MIRROR") or MIRROR
    return (f"debootstrap --variant=minbase --include={','.join(PACKAGES)} {SUITE} {mirror}\n"
            f"apt-get install --no-install-recommends {' '.join(EXTRA_PACKAGES)}\n")


def _install_extra(root: Path) -> None:
    """apt-get install EXTRA_PACKAGES inside the fresh tree (chroot, /proc mounted for the packages' scripts)."""
    proc_dir = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True, capture_output=True)
    try:
        proc = subprocess.run(
            ["chroot", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive",
             "sh", "-c", f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {' '.join(EXTRA_PACKAGES)}"
             " && apt-get clean"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env={**os.environ, "PATH": _host_path()})
    finally:
        subprocess.run(["umount", str(proc_dir)], capture_output=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BoxError(f"apt-get install {' '.join(EXTRA_PACKAGES)} in the rootfs failed (exit {proc.returncode}):\n{tail}")


def ensure_rootfs(cache: Path | None = None, log=print) -> Path:
    """The cached rootfs, built with debootstrap when missing or built from another recipe (~60 s, ~330 MB).

    A lock file makes concurrent test runs wait for one build instead of racing; the build goes to a temporary
    directory renamed into place only when complete, so an interrupted build is never reused.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    recipe = _recipe()
    # One directory per recipe: checkouts with different recipes (branches, CI next to a developer) share the cache
    # without rebuilding each other's rootfs, nor deleting one a running container boots from.
    rootfs = cache / f"rootfs-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    with open(cache / "rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = rootfs / STAMP
        if stamp.is_file() and stamp.read_text() == recipe:
            return rootfs
        tmp = cache / f"rootfs.build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        mirror = recipe.splitlines()[0].split()[-1]
        cmd = [tool("debootstrap") or "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               SUITE, str(tmp), mirror]
        log(f"building the rootfs (cached afterwards in {rootfs}): {shlex.join(cmd)}")
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env={**os.environ, "PATH": _host_path()})
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise BoxError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
        try:
            _install_extra(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / STAMP).write_text(recipe)
        if rootfs.exists():
            shutil.rmtree(rootfs)
        tmp.rename(rootfs)
        log(f"rootfs built in {time.monotonic() - t0:.0f} s")
        return rootfs


# ----------------------------------------------------------------------------------------------- cgroups


def _cgroup_roots() -> list[Path]:
    """Mount points of the hierarchies nspawn uses: cgroup v2 (unified) and the v1 name=systemd one."""
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = (right.split() + ["", "", ""])[:3]
            mountpoint = Path(left.split()[4])
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
                if os.access(mountpoint, os.W_OK):
                    roots.append(mountpoint)
    return roots


def _kill_and_remove_cgroup(path: Path) -> list[str]:
    """Depth-first: SIGKILL what is left in our own cgroup (only processes we started live there), then rmdir."""
    problems = []
    if not path.is_dir():
        return problems
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        problems += _rmdir_cgroup(child)
    problems += _rmdir_cgroup(path)
    return problems


def reap_stale(prefix: str = "polymm-e2e-") -> list[str]:
    """Containers of earlier runs whose test process died without cleaning up (SIGKILL, power loss): their
    cgroups are named polymm-e2e-<pid>-..., so a dead <pid> means nobody will stop them. Kill and remove."""
    reaped = []
    for root in _cgroup_roots():
        for cg in root.glob(prefix + "*"):
            owner = cg.name[len(prefix):].split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                _kill_and_remove_cgroup(cg)
                reaped.append(str(cg))
    return reaped


def _rmdir_cgroup(path: Path) -> list[str]:
    for _ in range(50):
        try:
            path.rmdir()
            return []
        except FileNotFoundError:
            return []
        except OSError:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.1)
    return [f"could not remove cgroup {path}"]


# ----------------------------------------------------------------------------------------------- container


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return f"$ {shlex.join(self.argv)}\n(exit {self.returncode})\n{self.stdout}{self.stderr}"


@dataclass
class Container:
    """A booted container. Use as a context manager or call stop(); stop() is idempotent."""

    rootfs: Path
    binds_ro: dict[str, str] = field(default_factory=dict)   # host path -> container path
    name: str = field(default_factory=lambda: f"polymm-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    log_path: Path | None = None
    nspawn: subprocess.Popen | None = None
    init_pid: int | None = None
    _cgroups: list[Path] = field(default_factory=list)
    _log_file: object = None
    _own_log: bool = False

    # -- lifecycle

    def boot(self, timeout_s: float = 60.0) -> "Container":
        for cg in reap_stale():
            print(f"note: removed a container left over by a dead test run: {cg}", file=sys.stderr)
        self._cgroups = [root / self.name for root in _cgroup_roots()]
        for cg in self._cgroups:
            cg.mkdir()
        cmd = [
            tool("systemd-nspawn") or "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
            "-M", self.name, "-D", str(self.rootfs),
            "--boot", "--console=read-only", "--volatile=overlay",
        ] + [f"--bind-ro={host}:{inside}" for host, inside in self.binds_ro.items()]
        # The shell moves itself into our cgroup, then becomes nspawn: the container's cgroups land below ours.
        join = "".join(f'echo $$ > {shlex.quote(str(cg / "cgroup.procs"))} || exit 97; ' for cg in self._cgroups)
        if self.log_path is None:  # ours to delete at stop(); errors raised before carry its tail
            self.log_path, self._own_log = Path(f"/tmp/{self.name}.console.log"), True
        self._log_file = open(self.log_path, "wb")
        self.nspawn = subprocess.Popen(["sh", "-c", join + "exec " + shlex.join(cmd)], stdin=subprocess.DEVNULL,
                                       stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        self.init_pid = self._wait_for_init(deadline)
        while not Path(f"/proc/{self.init_pid}/root/run/systemd/private").exists():
            self._check_alive("waiting for systemd's private socket")
            if time.monotonic() > deadline:
                raise BoxError(f"systemd in the container did not come up in {timeout_s:.0f} s\n{self.console()}")
            time.sleep(0.1)
        state = self.run(["systemctl", "is-system-running", "--wait"], timeout=max(5.0, deadline - time.monotonic()))
        if state.stdout.strip() not in ("running", "degraded"):
            raise BoxError(f"container did not reach running: {state.describe()}\n{self.console()}")
        if state.stdout.strip() == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout
            print(f"note: container is degraded (not our units): {failed.strip()}", file=sys.stderr)
        return self

    def _check_alive(self, doing: str) -> None:
        if self.nspawn.poll() is not None:
            raise BoxError(f"systemd-nspawn exited ({self.nspawn.returncode}) while {doing}\n{self.console()}")

    def _wait_for_init(self, deadline: float) -> int:
        """The container's PID 1 seen from the host: a descendant of nspawn whose innermost pid is 1."""
        while time.monotonic() < deadline:
            self._check_alive("waiting for the container's init")
            for pid in _descendants(self.nspawn.pid):
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next((l.split()[1:] for l in status.splitlines() if l.startswith("NSpid:")), [])
                    if len(nspid) >= 2 and nspid[-1] == "1":
                        return pid
            time.sleep(0.05)
        raise BoxError(f"no container init appeared\n{self.console()}")

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        """Power the container off (SIGTERM to nspawn = clean shutdown), then remove our cgroups.

        Returns problems in words (empty when all went well); never raises, so it is safe in finally blocks.
        """
        problems: list[str] = []
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout_s)
            except subprocess.TimeoutExpired:
                problems.append(f"nspawn did not exit {timeout_s:.0f} s after SIGTERM: killed")
                self.nspawn.kill()
                self.nspawn.wait(10)
        for cg in reversed(self._cgroups):
            problems += _kill_and_remove_cgroup(cg)
        self._cgroups = []
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        return problems

    def __enter__(self) -> "Container":
        try:
            return self.boot()
        except BaseException:
            self.stop()  # a half-booted container and its cgroups must not outlive the error
            raise

    def __exit__(self, *exc) -> None:
        for p in self.stop():
            print(f"cleanup: {p}", file=sys.stderr)

    # -- driving it

    def run(self, argv: list[str] | str, *, check: bool = False, timeout: float = 60.0, user: str | None = None,
            env: dict[str, str] | None = None, input: str | None = None) -> Run:
        """Run a command inside the container as root (or `user`), with a clean environment."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        if self.init_pid is None:
            raise BoxError("container not booted")
        envs = [f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat", "TERM=dumb"]
        envs += [f"{k}={v}" for k, v in (env or {}).items()]
        inner = list(argv) if user is None else ["runuser", "-u", user, "--"] + list(argv)
        cmd = [tool("nsenter") or "nsenter", "-t", str(self.init_pid), "--all", "env", "-i"] + envs + inner
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            raise BoxError(f"timed out after {timeout:.0f} s: {shlex.join(inner)}\n{out}") from None
        result = Run(inner, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise BoxError(result.describe())
        return result

    def path(self, inside: str) -> Path:
        """A path inside the container, seen from the host (read it; writing works too, as root)."""
        return Path(f"/proc/{self.init_pid}/root") / inside.lstrip("/")

    def console(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_bytes().decode(errors="replace").splitlines()
        return "console (last lines):\n" + "\n".join(text[-lines:])


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else []:
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    out.append(int(child))
                    todo.append(int(child))
    return out


# ----------------------------------------------------------------------------------------------- by hand


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the cached rootfs, or boot it and run one command inside.")
    ap.add_argument("--bind-ro", action="append", default=[], metavar="HOST:INSIDE")
    ap.add_argument("command", nargs="*", help="command to run inside (default: systemctl status)")
    args = ap.parse_args(argv)
    reason = why_unusable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    rootfs = ensure_rootfs()
    binds = dict(b.split(":", 1) for b in args.bind_ro)
    with Container(rootfs, binds) as box:
        r = box.run(args.command or ["systemctl", "status", "--no-pager"], timeout=600)
        sys.stdout.write(r.output)
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
