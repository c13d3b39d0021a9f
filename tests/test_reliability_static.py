"""Source-tree audits: every file write is atomic, and nothing unpickles untrusted data.

Both tests parse every Python file of bregzoo (core, CLI, zoo, benchmarks) with ``ast`` and flag calls by
shape, so a new ``torch.save`` or ``pickle.load`` anywhere fails here until it is routed through
``bregzoo.io`` or added to an allow-list below with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["src", "cli", "plugins", "benchmarks"]


def _python_files() -> list[Path]:
    files = []
    for top in SCANNED:
        files += [p for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts and "build" not in p.parts]
    assert len(files) > 30, files  # the scan really saw the tree
    return sorted(files)


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    """Dotted name of a call target: ``torch.load``, ``fig.savefig``, ``open``."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, key: str):
    for k in call.keywords:
        if k.arg == key:
            return k.value
    return None


def _const(node) -> object:
    return node.value if isinstance(node, ast.Constant) else None


# -- crash safety: writes ----------------------------------------------------------------------------

ATOMIC_WRITER = "src/bregzoo/io.py"
# (file relative to the repo, call) -> why this write need not be atomic.
WRITE_ALLOWED = {
    ("benchmarks/perf.py", "open"): "writes '5' to /proc/self/clear_refs (resets the peak-RSS mark), not a file",
    ("plugins/examples/bregzoo-alpha/src/bregzoo_alpha/sweep_cmd.py", "fig.savefig"):
        "a third-party example plugin's on-request plot; bregzoo's guarantee covers bregzoo's own files",
}
WRITERS = {"save", "save_file", "dump", "write_text", "write_bytes", "savefig", "imwrite", "fdopen", "safe_save",
           "save_state", "tofile"}


def _in_memory_buffers(path: Path) -> set[str]:
    """Names assigned from ``BytesIO()``/``StringIO()`` in a file: writes into them touch no disk."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and _name(node.value.func).endswith(("BytesIO", "StringIO")):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _write_calls() -> list[tuple[str, str, int]]:
    found = []
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel == ATOMIC_WRITER:
            continue  # the writer itself; its behaviour is tested in tests/test_reliability_atomic.py
        buffers = _in_memory_buffers(path)
        for call in _calls(path):
            if any(isinstance(a, ast.Name) and a.id in buffers for a in call.args):
                continue  # rendered in memory, then written with io.write_bytes
            name = _name(call.func)
            last = name.rsplit(".", 1)[-1]
            if last == "open" and name in ("open", "io.open", "builtins.open"):
                mode = _const(call.args[1]) if len(call.args) > 1 else _const(_kw(call, "mode"))
                if not (isinstance(mode, str) and set(mode) & set("wax+")):
                    continue  # a read
            elif last in ("write_text", "write_bytes") and name.startswith(("io.", "bregzoo.io.", "bregzoo_io.")):
                continue  # the atomic writers
            elif last == "save_file" and name in ("io.save_file", "bregzoo_io.save_file"):
                continue
            elif last == "save_state" and name.endswith(("acc.save_state", "accelerator.save_state")):
                continue  # writes into a temporary checkpoint directory renamed into place (io.replace_dir)
            elif last not in WRITERS:
                continue
            found.append((rel, name, call.lineno))
    return found


def test_every_file_write_goes_through_the_atomic_writers():
    """A write that is not bregzoo.io's (temp file in the same dir + fsync + os.replace) is flagged."""
    offenders = [f"{rel}:{line}: {name}(...)" for rel, name, line in _write_calls()
                 if (rel, name) not in WRITE_ALLOWED]
    assert not offenders, "route these through bregzoo.io (or allow-list them with a reason):\n" + "\n".join(offenders)


def test_the_write_allow_list_has_no_stale_entries():
    seen = {(rel, name) for rel, name, _ in _write_calls()}
    stale = [k for k in WRITE_ALLOWED if k not in seen]
    assert not stale, f"allow-listed writes that no longer exist: {stale}"


# -- untrusted files: loads --------------------------------------------------------------------------

# The two places that unpickle, each through an unpickler whose find_class admits a fixed list of names:
# CIFAR-10's python batches (numpy array reconstruction only;
# tests/test_images.py::test_malicious_cifar_pickle_does_not_execute), and EDM network pickles, read only
# behind ``bregzoo convert edm-pkl --trust-pickle`` (tensors and OrderedDict; every other name, and the
# network source the file carries, stays inert; tests/test_edm_convert.py::test_a_malicious_pickle_does_not_run).
UNPICKLE_ALLOWED = {("plugins/bregzoo_zoo/cifar_files.py", "_ArraysOnly"),
                    ("plugins/bregzoo_zoo/edm_pickle.py", "_EDMPickleReader")}


def test_weights_load_only_through_safetensors_or_weights_only_torch_load():
    """Every torch.load passes weights_only=True literally; no pickle.load(s) or other unpickler."""
    offenders, torch_loads = [], 0
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        for call in _calls(path):
            name = _name(call.func)
            where = f"{rel}:{call.lineno}: {name}"
            if name == "torch.load":
                torch_loads += 1
                if _const(_kw(call, "weights_only")) is not True:
                    offenders.append(f"{where} without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load",
                          "pickle.Unpickler", "torch.serialization.add_safe_globals"):
                offenders.append(where)
            elif name.endswith("Unpickler") and (rel, name.rsplit(".", 1)[-1]) not in UNPICKLE_ALLOWED:
                offenders.append(where)
    assert torch_loads >= 2  # the scan saw the known weights-only loads (ddpm .bin, Inception pre-check)
    assert not offenders, "unsafe deserialisation:\n" + "\n".join(offenders)


def test_the_only_unpickler_subclasses_are_the_restricted_ones():
    """``class X(pickle.Unpickler)`` appears only as the allow-listed readers, and each overrides find_class."""
    subclasses = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(_name(b).endswith("Unpickler") for b in node.bases):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                subclasses.append((path.relative_to(ROOT).as_posix(), node.name, "find_class" in methods))
    assert sorted(subclasses) == sorted((rel, name, True) for rel, name in UNPICKLE_ALLOWED)


def test_no_call_passes_an_unsafe_loading_flag():
    """No call anywhere passes weights_only=False, allow_pickle=True or trust_remote_code=True."""
    unsafe = {"weights_only": False, "allow_pickle": True, "trust_remote_code": True}
    hits = [f"{p.relative_to(ROOT).as_posix()}:{c.lineno}: {k.arg}={_const(k.value)}"
            for p in _python_files() for c in _calls(p) for k in c.keywords
            if k.arg in unsafe and _const(k.value) is unsafe[k.arg]]
    assert not hits, hits


# -- bad input: paths ----------------------------------------------------------------------------------

def test_no_path_expanduser_which_raises_for_an_unknown_user():
    """``Path('~typo/x').expanduser()`` raises RuntimeError (a traceback for a mistyped path); the tree uses
    ``os.path.expanduser``, which leaves such a path as it is, so it reads as 'does not exist'."""
    hits = [f"{p.relative_to(ROOT).as_posix()}:{c.lineno}" for p in _python_files() for c in _calls(p)
            if isinstance(c.func, ast.Attribute) and c.func.attr == "expanduser"
            and _name(c.func) != "os.path.expanduser"]
    assert not hits, hits
