"""`bench/soak.py --tracemalloc`: a process started with this directory on PYTHONPATH traces its allocations and, every
SOAK_TRACEMALLOC_EVERY_S seconds (the variables are not named POLYMM_*: the demo's Stack keeps those from the
services), writes what grew since its first snapshot (taken after
SOAK_TRACEMALLOC_AFTER_S, i.e. after warm-up) to SOAK_TRACEMALLOC_DIR/<role>-<pid>.txt: the 25
allocation sites that grew most, by line, with 8 frames of traceback for the top 5. A diagnostic for finding
per-window growth, never loaded by the services otherwise (no product code knows about it)."""
import os

_DIR = os.environ.get("SOAK_TRACEMALLOC_DIR")


def _role() -> str:
    try:
        cmd = open("/proc/self/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "python"
    for role in ("feed", "trader", "sim"):
        if f"polymm.{role}." in cmd:
            return role
    return ""


def _start() -> None:
    import threading
    import time
    import tracemalloc

    role = _role()
    roles = os.environ.get("SOAK_TRACEMALLOC_ROLES", "feed,trader,sim").split(",")
    if not role or role not in roles:
        return
    tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "8")))
    every = float(os.environ.get("SOAK_TRACEMALLOC_EVERY_S", "120"))
    after = float(os.environ.get("SOAK_TRACEMALLOC_AFTER_S", "300"))
    path = os.path.join(_DIR, f"{role}-{os.getpid()}.txt")
    skip = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"), tracemalloc.Filter(False, "<unknown>"))

    def run() -> None:
        time.sleep(after)
        base = tracemalloc.take_snapshot().filter_traces(skip)
        t0 = time.time()
        while True:
            time.sleep(every)
            snap = tracemalloc.take_snapshot().filter_traces(skip)
            grew = snap.compare_to(base, "filename")
            lines = [f"# {role} pid {os.getpid()}: {time.time() - t0:.0f} s after the base snapshot; traced "
                     f"{tracemalloc.get_traced_memory()[0] / 1e6:.2f} MB, {sum(s.size_diff for s in grew) / 1e3:+.1f} kB "
                     "since the base"]
            lines += ["## by file"] + [str(stat) for stat in grew[:15]] + ["## by line"]
            for stat in snap.compare_to(base, "lineno")[:25]:
                lines.append(str(stat))
            for stat in snap.compare_to(base, "traceback")[:5]:
                lines.append(f"\n{stat.size_diff / 1e3:+.1f} kB in {stat.count_diff:+d} blocks:")
                lines.extend("    " + line for line in stat.traceback.format())
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")

    threading.Thread(target=run, name="soak-tracemalloc", daemon=True).start()


if _DIR:
    _start()
