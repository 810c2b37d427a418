"""The dependency rules of ARCHITECTURE.md, read from the source (every import statement, including the ones
inside functions), so a module's folder tells what it may import:

- `trader/decision` is pure: neither it nor anything of ours it imports touches I/O (sockets, threads,
  processes, HTTP, WebSockets, the SDK, databases) or the trader's I/O packages (venue, execution, control,
  engine, service).
- `trader/venue` (the exchange's protocol) imports nothing from `trader/decision`.
- Nothing outside `trader/` imports `polymm.trader` (tests, bench, tools and the demo application may), except
  `ctl/` and `web/` reading the trader's ledger through its read API (`polymm.trader.ledger`: the trader owns the
  schema and the query; `mmctl history`, `polymm-report` and the page present them).
- `web/` talks to the trader only through the control protocol `ctl/` owns (and the ledger's read API): it imports
  nothing else of the trader and nothing of the feed.
- `sim/` imports none of the product (feed, trader, ctl, demo); `polymm/` plumbing imports no product at all.
"""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IO_MODULES = {"socket", "threading", "subprocess", "requests", "websocket", "py_clob_client_v2", "sqlite3", "http",
              "urllib", "aiohttp", "multiprocessing", "asyncio", "selectors", "mmap"}
TRADER_IO = {"polymm.trader." + p for p in ("venue", "execution", "control", "engine", "service")}
PRODUCT = {"polymm.feed", "polymm.trader", "polymm.ctl", "polymm.sim", "polymm.demo", "polymm.web"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_folder(pkg: str, package_dir: dict[str, str]) -> Path:
    """The folder setuptools installs `pkg` from: its own package-dir entry, else its nearest mapped parent's
    folder plus the rest of the dotted name (how setuptools resolves a sub-package)."""
    parts = pkg.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in package_dir:
            return ROOT / package_dir[head] / Path(*parts[i:]) if parts[i:] else ROOT / package_dir[head]
    return ROOT / Path(*parts)


def _modules() -> dict[str, Path]:
    """Every module of the installed `polymm` package, by dotted name, from pyproject's packages."""
    tool = _setuptools()
    out = {}
    for pkg in tool["packages"]:
        for path in package_folder(pkg, tool["package-dir"]).glob("*.py"):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            out[name] = path
    return out


MODULES = _modules()


def imports_of(name: str) -> set[str]:
    """The absolute names `name` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    path = MODULES[name]
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


def _in(prefix: str) -> list[str]:
    mods = sorted(m for m in MODULES if _within(m, [prefix]))
    assert mods, f"no modules under {prefix}: the layout test has lost track of the tree"
    return mods


@pytest.mark.parametrize("module", _in("polymm.trader.decision"))
def test_decision_is_pure(module):
    seen, todo, bad = set(), [module], []
    while todo:  # everything of ours it reaches, directly or not
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for imp in imports_of(m):
            if imp.split(".")[0] in IO_MODULES or _within(imp, TRADER_IO):
                bad.append(f"{m} imports {imp}")
        todo.extend(_ours(imports_of(m)))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", _in("polymm.trader.venue"))
def test_venue_knows_nothing_of_decisions(module):
    assert not [i for i in imports_of(module) if _within(i, ["polymm.trader.decision"])]


@pytest.mark.parametrize("module", [m for m in MODULES if not _within(m, ["polymm.trader", "polymm.demo"])])
def test_nothing_outside_trader_imports_it(module):
    allowed = ["polymm.trader.ledger"] if _within(module, ["polymm.ctl", "polymm.web"]) else []
    assert not [i for i in imports_of(module) if _within(i, ["polymm.trader"]) and not _within(i, allowed)]



@pytest.mark.parametrize("module", _in("polymm.web"))
def test_web_reaches_the_trader_only_through_the_control_protocol(module):
    assert not [i for i in imports_of(module) if _within(i, ["polymm.feed"])]
    # the control client and protocol (ctl owns the framing); not mmctl's CLI or its text
    # (`from polymm.ctl import protocol` names the package itself too)
    assert not [i for i in imports_of(module) if _within(i, ["polymm.ctl"]) and i != "polymm.ctl"
                and not _within(i, ["polymm.ctl.client", "polymm.ctl.protocol"])]


@pytest.mark.parametrize("module", _in("polymm.sim"))
def test_sim_imports_none_of_the_product(module):
    assert not [i for i in imports_of(module) if _within(i, PRODUCT - {"polymm.sim"})]


@pytest.mark.parametrize("module", [m for m in MODULES if not _within(m, PRODUCT)])
def test_plumbing_imports_no_product(module):
    assert not [i for i in imports_of(module) if _within(i, PRODUCT)]


def test_every_package_folder_is_installed():
    """A sub-package missing from pyproject's `packages` works in an editable install and breaks `pip install .`."""
    tool = _setuptools()
    listed = {package_folder(pkg, tool["package-dir"]).resolve() for pkg in tool["packages"]}
    folders = {init.parent.resolve() for rel in tool["package-dir"].values() for init in (ROOT / rel).rglob("__init__.py")}
    assert not sorted(str(f.relative_to(ROOT)) for f in folders - listed)


# ---------------------------------------------------------------------------------------------------------
# Environment names live in polymm/env.py (ARCHITECTURE.md, "Contracts, names and exchange facts"), so the
# services, mmctl, the demo and the unit files cannot drift apart. Docstrings and comments may name them.
ENV_MODULE = "polymm.env"
POLYMM_NAME = re.compile(r"POLYMM_[A-Z_]+")


def _strings_outside_docstrings(tree: ast.AST) -> list[ast.Constant]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name)
                                                                           and node.id == "environ")


def _environment_reads_by_literal(tree: ast.AST) -> list[ast.AST]:
    """os.environ.get("X"), os.environ["X"], os.getenv("X"), env.get("X"): a name spelt here, not in env.py."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            target, method = node.func.value, node.func.attr
            reads = ((_is_environ(target) and method in ("get", "pop", "setdefault"))
                     or (isinstance(target, ast.Name) and target.id in ("os", "env") and method in ("getenv", "get")))
            if reads and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append(node)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant):
            found.append(node)
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if m != ENV_MODULE])
def test_environment_names_are_defined_only_in_polymm_env(module):
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    spelt = [f"line {n.lineno}: {POLYMM_NAME.search(n.value).group()}" for n in _strings_outside_docstrings(tree)
             if POLYMM_NAME.search(n.value)]
    assert not spelt, f"{module} spells environment names polymm/env.py defines (use env.NAME): {spelt}"
    read = [f"line {n.lineno}: {ast.unparse(n)}" for n in _environment_reads_by_literal(tree)]
    assert not read, f"{module} reads the environment by a literal name (define it in polymm/env.py): {read}"


def test_the_environment_check_sees_what_it_forbids():
    """The check above, on code that breaks the rule: it must not pass vacuously."""
    bad = ast.parse('"""Mentions POLYMM_SHM in a docstring: allowed."""\nimport os\n'
                    'NAME = "POLYMM_FEED_METRICS"\nhelp_text = f"x (POLYMM_SHM) {y}"\n'
                    'a = os.environ.get("NOTIFY_SOCKET")\nb = os.environ["PK"]\nc = env.get("X")\n')
    spelt = [n.value for n in _strings_outside_docstrings(bad) if POLYMM_NAME.search(n.value)]
    assert spelt == ["POLYMM_FEED_METRICS", "x (POLYMM_SHM) "]
    assert len(_environment_reads_by_literal(bad)) == 3
