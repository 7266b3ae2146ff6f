"""The package layout's rules (docs/ARCHITECTURE.md): data flows one way between stages."""

import ast
from pathlib import Path

import pytest

KWS = Path(__file__).resolve().parent.parent / "kws"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


@pytest.mark.parametrize("stage,forbidden", [
    ("link", ("kws.targets", "kws.codegen", "kws.checks")),
    ("quant", ("kws.detect", "kws.codegen", "kws.targets", "kws.link", "kws.checks")),
    ("codegen", ("kws.targets", "kws.checks")),
    ("targets", ("kws.checks",)),
])
def test_a_stage_does_not_import_the_stages_after_it(stage, forbidden):
    bad = {f"{p.relative_to(KWS)}: {m}" for p in (KWS / stage).rglob("*.py")
           for m in _imports(p) if m.startswith(forbidden)}
    assert not bad


def test_the_vocabulary_imports_nothing_of_kws():
    assert not {m for m in _imports(KWS / "data" / "tasks.py") if m.startswith("kws")}
