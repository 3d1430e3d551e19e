"""What each DVC stage really depends on, computed from the code, against what dvc.yaml declares.

For every stage of every ``dvc.yaml`` (the main one and ``benchmarks/*/dvc.yaml``):

* **code**: the transitive closure of project modules its entry point (``python -m stages.X``)
  imports, with the ``__init__`` of every package on the way and the package data files (the
  model configs); each must be a declared dep, itself or through a parent folder;
* **params**: every key the stage reads from ``Params``, in its own module and in every project
  function it hands a params object to whose parameter is annotated with a params type (followed
  transitively). A key that names a file or folder (``path`` in ``pipeline/params.py``) must be a
  declared dep or out; any other key must be under a declared ``params:`` entry. A params group
  used any other way (handed to an unannotated function, say) counts as every key under it;
* **independence**: no stage imports another stage, and no stage depends on a metrics file;
* **no dead code deps**: a declared project file or folder the stage does not import is reported
  too (it would rerun the stage for nothing).

    python -m slug_cli.deps            # print the problems (exit 1) or "ok"
    python -m slug_cli.deps --needs    # print each stage's computed code and path deps
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGES = ("pipeline", "stages", "slug_cli", "bench")
_VAR = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Stage:
    name: str
    file: str  # the dvc.yaml it comes from
    module: str  # stages.X
    wdir: Path
    deps: list[str]
    outs: list[str]
    params: list[str]
    metrics: list[str] = field(default_factory=list)


def _lookup(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        node = node[part]
    return node


def _interp(value, tree: dict):
    if isinstance(value, str):
        whole = _VAR.fullmatch(value.strip())
        if whole:
            return _lookup(tree, whole.group(1).strip())
        return _VAR.sub(lambda m: str(_lookup(tree, m.group(1).strip())), value)
    if isinstance(value, list):
        return [_interp(v, tree) for v in value]
    if isinstance(value, dict):
        return {_interp(k, tree): _interp(v, tree) for k, v in value.items()}
    return value


def _names(entries) -> list[str]:
    """dvc.yaml dep/out/metric entries: strings or one-key mappings (``path: {cache: false}``)."""
    out = []
    for e in entries or []:
        out += [e] if isinstance(e, str) else list(e)
    return out


def read_stages(dvc_yaml: Path, params: dict) -> list[Stage]:
    raw = yaml.safe_load(dvc_yaml.read_text())
    for v in raw.get("vars", []):  # a dvc.yaml's own values (a mapping among its vars)
        if isinstance(v, dict):
            params = {**params, **v}
    stages = []
    for name, st in raw.get("stages", {}).items():
        items = [(name, st, params)]
        if "foreach" in st:
            values = _interp(st["foreach"], params) or ["<item>"]  # an empty list: check the body
            pairs = values.items() if isinstance(values, dict) else ((v, v) for v in values)
            items = [(f"{name}@{k}", st["do"], {**params, "key": k, "item": v})
                     for k, v in pairs]
        elif "matrix" in st:  # ${item.<axis>}, one stage per combination
            axes = {k: _interp(v, params) for k, v in st["matrix"].items()}
            body = {k: v for k, v in st.items() if k != "matrix"}
            items = [(f"{name}@{'-'.join(map(str, combo))}", body,
                      {**params, "item": dict(zip(axes, combo))})
                     for combo in itertools.product(*axes.values())]
        for sname, body, tree in items:
            body = _interp(body, tree)
            argv = shlex.split(body["cmd"])
            module = argv[argv.index("-m") + 1] if "-m" in argv else ""
            wdir = (dvc_yaml.parent / body.get("wdir", ".")).resolve()
            stages.append(Stage(sname, str(dvc_yaml), module, wdir, _names(body.get("deps")),
                                _names(body.get("outs")) + _names(body.get("metrics"))
                                + _names(body.get("plots")),
                                [p for p in body.get("params", []) if isinstance(p, str)],
                                _names(body.get("metrics"))))
    return stages


# ------------------------------------------------------------------------------------ modules


def _module_file(root: Path, module: str) -> Path | None:
    base = root / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.cache
def _parsed(path: Path, stamp: tuple[int, int]) -> ast.Module:
    """One parse per file version (the check reads the same modules for every stage)."""
    return ast.parse(path.read_text())


def parse(path: Path) -> ast.Module:
    return _parsed(path, _stamp(path))


def _imports(root: Path, module: str, path: Path) -> frozenset[str]:
    return _imports_of(root, module, path, _stamp(path))


@functools.cache
def _imports_of(root: Path, module: str, path: Path, stamp: tuple[int, int]) -> frozenset[str]:
    tree = _parsed(path, stamp)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            for a in node.names:  # ``from pkg import submodule``
                if _module_file(root, f"{target}.{a.name}"):
                    found.add(f"{target}.{a.name}")
    out = set()
    for name in found:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            out.add(".".join(parts[:i]))
    return frozenset(m for m in out if _is_project(m) and _module_file(root, m))


def module_closure(root: Path, module: str) -> dict[str, Path]:
    """Every project module ``module`` imports, directly or not, with its file."""
    todo, seen = [module], {}
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        path = _module_file(root, m)
        if path is None:
            continue
        seen[m] = path
        todo += sorted(_imports(root, m, path) - set(seen))
    return seen


def _strings(path: Path) -> frozenset[str]:
    return _strings_of(path, _stamp(path))


@functools.cache
def _strings_of(path: Path, stamp: tuple[int, int]) -> frozenset[str]:
    return frozenset(n.value for n in ast.walk(_parsed(path, stamp))
                     if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _package_data(root: Path, files: set[Path]) -> set[Path]:
    """Non-Python files shipped inside the packages of ``files`` (e.g. the model configs) that a
    module of the closure in the same package names (``"configs"``)."""
    out = set()
    for pkg in {f.parent for f in files if f.name == "__init__.py"}:
        named = set().union(*(_strings(f) for f in files if f.parent == pkg))
        for p in pkg.rglob("*"):
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts:
                owner = p.parent
                while owner != pkg and not (owner / "__init__.py").exists():
                    owner = owner.parent
                if owner == pkg and p.relative_to(pkg).parts[0] in named:
                    out.add(p)
    return out


# ------------------------------------------------------------------------------------- params


def _chain(node) -> tuple[str, list[str]] | None:
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return node.id, attrs[::-1]
    return None


def _params_types() -> set[str]:
    """The names of the params dataclasses (``Params``, ``CanvasParams``, ...)."""
    import dataclasses

    from pipeline import params as params_mod

    return {n for n, v in vars(params_mod).items()
            if dataclasses.is_dataclass(v) and isinstance(v, type)}


def _annotation(a) -> str | None:
    ann = a.annotation
    if isinstance(ann, ast.Name):
        return ann.id
    if isinstance(ann, ast.Attribute):
        return ann.attr
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        return ann.value.split(".")[-1]
    return None


class _Modules:
    """Parsed project modules, their import tables, and function lookup by call expression."""

    def __init__(self, root: Path):
        self.root, self.trees, self.tables = root, {}, {}

    def tree(self, module: str):
        if module not in self.trees:
            path = _module_file(self.root, module)
            self.trees[module] = parse(path) if path else None
        return self.trees[module]

    def table(self, module: str) -> dict[str, str]:
        """Local name -> the dotted name it stands for."""
        if module not in self.tables:
            out, path = {}, _module_file(self.root, module)
            package = module if path and path.name == "__init__.py" else module.rpartition(".")[0]
            for node in ast.walk(self.tree(module) or ast.Module(body=[], type_ignores=[])):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        out[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                            a.name.split(".")[0]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parts = package.split(".")
                        head = ".".join(parts[: len(parts) - node.level + 1])
                        base = f"{head}.{base}" if base else head
                    for a in node.names:
                        out[a.asname or a.name] = f"{base}.{a.name}"
            self.tables[module] = out
        return self.tables[module]

    def function(self, module: str, func) -> tuple[str, ast.FunctionDef] | None:
        """The project function a call's ``func`` expression names, with its module."""
        ch = _chain(func)
        if ch is None:
            return None
        name, attrs = ch
        dotted = self.table(module).get(name)
        if dotted is None:  # defined in this module
            dotted = f"{module}.{name}"
        parts = (dotted + ("." + ".".join(attrs) if attrs else "")).split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a project module
            mod = ".".join(parts[:cut])
            if _is_project(mod) and _module_file(self.root, mod):
                node = self.tree(mod)
                for part in parts[cut:]:
                    node = next((n for n in getattr(node, "body", [])
                                 if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                                 and n.name == part), None)
                    if node is None:
                        return None
                return (mod, node) if isinstance(node, ast.FunctionDef) else None
        return None


def _reads(mods: _Modules, module: str, fn, roots: dict[str, str], types: set[str],
           seen: set) -> set[str]:
    """Dotted params keys read in ``fn``; ``roots`` maps a local name to its key prefix. A params
    object handed to a project function whose parameter is annotated with a params type is
    followed into that function."""
    roots = dict(roots)
    keys: set[str] = set()
    parents = {c: n for n in ast.walk(fn) for c in ast.iter_child_nodes(n)}

    def key_of(node) -> str | None:
        ch = _chain(node)
        if ch is None or ch[0] not in roots:
            return None
        return ".".join(x for x in [roots[ch[0]], *ch[1]] if x)

    aliased = set()  # the chains that only define an alias
    for node in ast.walk(fn):  # aliases: x = p.a.b ; a, b = p.x, p.y
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            pairs = [(node.targets[0], node.value)]
            if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(node.targets[0].elts, node.value.elts))
            for t, v in pairs:
                k = key_of(v)
                if isinstance(t, ast.Name) and k is not None:
                    roots[t.id] = k
                    aliased.add(v)

    def follow(call, node, k) -> bool:
        found = mods.function(module, call.func)
        if found is None:
            return False
        mod, target = found
        args = target.args.posonlyargs + target.args.args
        if args and args[0].arg in ("self", "cls"):
            args = args[1:]
        if node in call.args:
            i = call.args.index(node)
            param = args[i] if i < len(args) else None
        else:
            kw = next(k_.arg for k_ in call.keywords if k_.value is node)
            param = next((a for a in args + target.args.kwonlyargs if a.arg == kw), None)
        if param is None or _annotation(param) not in types:
            return False
        if (mod, target.name, param.arg, k) not in seen:
            keys.update(_reads(mods, mod, target, {param.arg: k}, types,
                               seen | {(mod, target.name, param.arg, k)}))
        return True

    for node in ast.walk(fn):
        if isinstance(node, (ast.Attribute, ast.Name)):
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                continue  # not the outermost link of its chain
            if node in aliased or isinstance(getattr(node, "ctx", None), ast.Store):
                continue
            k = key_of(node)
            if k is None:
                continue
            if isinstance(parent, ast.keyword):
                parent = parents.get(parent)
            if isinstance(parent, ast.Call) and parent.func is not node and follow(parent, node, k):
                continue
            keys.add(k)
    return keys


def params_read(root: Path, module: str) -> set[str]:
    """Every params key the stage ``module`` reads, in its functions that take a ``Params``."""
    mods, types = _Modules(root), _params_types()
    keys = set()
    for fn in ast.walk(mods.tree(module)):
        if isinstance(fn, ast.FunctionDef):
            roots = [a.arg for a in fn.args.args if _annotation(a) == "Params"]
            if roots:
                keys |= _reads(mods, module, fn, {r: "" for r in roots}, types, set())
    return keys


def _leaves(tree, prefix: str = "") -> list[str]:
    """The keys under ``tree``; an empty dict (``multi.kinds: {}``) is a key itself."""
    if isinstance(tree, dict) and tree:
        return [k for name, v in tree.items() for k in _leaves(v, f"{prefix}{name}.")]
    return [prefix.rstrip(".")]


# ------------------------------------------------------------------------------------- checks


def _norm(path: str, wdir: Path, root: Path) -> str:
    p = (wdir / path).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def _covered(path: str, declared: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)


@dataclass
class Needs:
    code: list[str]  # project files
    paths: list[str]  # data files and folders named by the params it reads
    params: list[str]  # other params keys it reads (model references included)
    refs: list[str]  # the model references it loads: data/refs/<name> (pipeline.refs)


def needs(root: Path, stage: Stage, params: dict) -> Needs:
    from pipeline.params import path_keys, ref_keys
    from pipeline.refs import track_dir

    closure = module_closure(root, stage.module)
    files = set(closure.values())
    code = sorted({f.relative_to(root).as_posix() for f in files | _package_data(root, files)})
    pkeys = set(path_keys())
    rkeys = ref_keys()
    paths, other, refs = set(), set(), set()
    for k in params_read(root, stage.module):
        k = _existing(params, k)
        node = _lookup(params, k) if k else params
        for leaf in _leaves(node, f"{k}." if k else ""):
            if leaf in pkeys:
                paths.add(_norm(str(_lookup(params, leaf)), root, root))
            else:
                other.add(leaf)
            if leaf in rkeys:
                refs.add(track_dir(rkeys[leaf]).as_posix())
    return Needs(code, sorted(paths), sorted(other), sorted(refs))


def _existing(params: dict, key: str) -> str:
    """The longest prefix of ``key`` that params.yaml has (``concept.lower`` -> ``concept``)."""
    parts = key.split(".") if key else []
    while parts:
        try:
            _lookup(params, ".".join(parts))
            return ".".join(parts)
        except (KeyError, TypeError):
            parts.pop()
    return ""


def compact(root: Path, files: list[str]) -> list[str]:
    """The fewest deps that cover ``files`` and nothing else: a folder where every file of it (its
    Python modules and package data) is in ``files``, else the files."""
    have = set(files)

    def owned(folder: Path) -> set[str]:
        return {q.relative_to(root).as_posix() for q in folder.rglob("*")
                if q.is_file() and "__pycache__" not in q.parts and q.suffix != ".pyc"}

    out: list[str] = []
    for top in sorted({f.split("/")[0] for f in have}):
        todo = [root / top]
        while todo:
            folder = todo.pop(0)
            inside = owned(folder)
            if inside and inside <= have:
                out.append(folder.relative_to(root).as_posix())
                continue
            out += sorted(f for f in have if Path(f).parent == folder.relative_to(root))
            todo += sorted(q for q in folder.iterdir() if q.is_dir() and q.name != "__pycache__"
                           and any(f.startswith(q.relative_to(root).as_posix() + "/")
                                   for f in have))
    return sorted(out)


# Stages whose job is to roll metrics up into a report (no data flows on from them): the only
# ones that may depend on metrics files.
REPORTS = {"stages.summary"}


def dvc_files(root: Path) -> list[Path]:
    """The project's pipelines: the main one, the embedded default's, the benchmarks'."""
    return [root / "dvc.yaml", root / "tiny" / "dvc.yaml",
            *sorted(root.glob("benchmarks/*/dvc.yaml"))]


def check(root: Path) -> list[str]:
    """Every problem found, one line each (empty when dvc.yaml matches the code)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    files = dvc_files(root)
    stages = [s for f in files for s in read_stages(f, params)]
    metrics = {_norm(m, s.wdir, root) for s in stages for m in s.metrics}
    problems = []
    for s in stages:
        where = f"{Path(s.file).relative_to(root)}: {s.name}"
        if not s.module.startswith("stages.") or not _module_file(root, s.module):
            problems.append(f"{where}: cmd runs no stages.* module ({s.module or 'none'})")
            continue
        n = needs(root, s, params)
        deps = [_norm(d, s.wdir, root) for d in s.deps]
        outs = [_norm(o, s.wdir, root) for o in s.outs]
        own = _module_file(root, s.module).relative_to(root).as_posix()
        for f in n.code:
            if f.startswith("stages/") and f not in (own, "stages/__init__.py"):
                problems.append(f"{where}: imports another stage, {f}")
            elif not _covered(f, deps):
                problems.append(f"{where}: imports {f}, not a declared dep")
        item = s.name.split("@", 1)[1] if "@" in s.name else None
        for path in n.paths:
            # a foreach stage reads and writes only its own item under a root folder param
            mine = item is not None and _covered(f"{path.rstrip('/')}/{item}", deps + outs)
            if not (mine or _covered(path, deps + outs)):
                problems.append(f"{where}: reads {path} (a path param), not a declared dep or out")
        for r in n.refs:
            if not _covered(r, deps):
                problems.append(f"{where}: loads the model reference tracked in {r}, not a "
                                f"declared dep")
        for k in n.params:
            if not any(k == d or k.startswith(d + ".") for d in s.params):
                problems.append(f"{where}: reads param {k}, not declared under params")
        for d in deps:
            if d in metrics and s.module not in REPORTS:
                problems.append(f"{where}: depends on the metrics file {d}; pass data through outs")
            elif d.split("/")[0] in PACKAGES and not any(_covered(f, [d]) for f in n.code):
                problems.append(f"{where}: declares {d}, which it does not import")
    return problems


def main(argv: list[str]) -> None:
    root = Path.cwd()
    if "--needs" in argv:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for f in dvc_files(root):
            for s in read_stages(f, params):
                n = needs(root, s, params)
                print(f"{s.name}:\n  code: {compact(root, n.code)}\n  paths: {n.paths}\n"
                      f"  refs: {n.refs}\n  params: {n.params}")
        return
    problems = check(root)
    print("\n".join(problems) or "ok")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
