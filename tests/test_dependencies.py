"""dvc.yaml declares what every stage really reads: a stale cache is a wrong result.

The check itself (``slug_cli.deps``) computes, for every stage of every dvc.yaml, the project
modules its entry point imports (transitively), the data paths it reads from params and the params
it reads, and compares them with the declared deps, outs and params."""

import ast
from pathlib import Path

from slug_cli import deps

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_declares_what_it_reads():
    problems = deps.check(ROOT)
    assert not problems, "\n".join(problems + ["(python -m slug_cli.deps --needs lists what each "
                                               "stage needs)"])


def test_the_check_sees_a_missing_dep(tmp_path):
    """Drop one imported module, one data path, one param and one model reference from a copy of
    dvc.yaml: each is reported."""
    import yaml

    for item in ("pipeline", "stages", "params.yaml", "benchmarks", "tiny"):
        src = ROOT / item
        dst = tmp_path / item
        if src.is_dir():
            import shutil

            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.write_bytes(src.read_bytes())
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    st = raw["stages"]["unlearn"]
    st["deps"] = [d for d in st["deps"] if d not in ("pipeline/unlearn/trials.py", "${rank.out}")]
    st["params"] = [p for p in st["params"] if p != "unlearn"] + ["unlearn.target"]
    raw["stages"]["evaluate"]["deps"].append("metrics/unlearn.json")
    raw["stages"]["gradients"]["deps"].remove("data/refs/clip")
    raw["stages"]["concept_sets"]["do"]["params"].remove("multi.kinds")  # its value is {}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    found = "\n".join(deps.check(tmp_path))
    assert "unlearn: imports pipeline/unlearn/trials.py, not a declared dep" in found
    assert "unlearn: reads data/rank (a path param), not a declared dep or out" in found
    assert "unlearn: reads param unlearn.topk, not declared under params" in found
    assert "evaluate: depends on the metrics file metrics/unlearn.json" in found
    assert "gradients: loads the model reference tracked in data/refs/clip" in found
    assert "concept_sets@<item>: reads param multi.kinds, not declared under params" in found


def test_no_stage_imports_another_stage_or_reads_a_metrics_file():
    for path in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if id(node) in docs:
                continue
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not (node.module or "").startswith("stages"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("stages") for a in node.names), path
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "metrics/" not in node.value, f"{path}: a metrics path {node.value!r}"


def test_stages_are_thin():
    """A stage reads its params, calls the library, writes its outputs: at most 60 lines, and
    ``main`` at most 40."""
    for path in sorted((ROOT / "stages").glob("*.py")):
        lines = path.read_text().splitlines()
        assert len(lines) <= 60, f"{path.name}: {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef) and node.name == "main":
                n = node.end_lineno - node.lineno + 1
                assert n <= 40, f"{path.name}: main has {n} lines"
