"""The floors of ARCHITECTURE.md, arrows pointing down only: the CLI -> workflows -> the rooms (pipelines,
analysis, trainers) and the fixtures (the embedded sample) -> the core. Read from every module's imports, so a
new arrow upwards fails here before anyone has to find it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = {"pipelines": "wtours.pipelines", "analysis": "wtours.analysis", "trainers": "wtours.trainers"}
UPPER = ("wtours.cli", "wtours.workflows")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at the top or inside a function), as absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def reaches(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in names if name.startswith(prefixes))


@pytest.mark.parametrize("path", [p for p in modules("wtours") if p.name not in ("cli.py", "__main__.py")
                                  and "workflows" not in p.parts], ids=lambda p: p.name)  # fmt: skip
def test_the_core_imports_no_room_no_fixture_and_nothing_above(path: Path) -> None:
    found = reaches(imports(path), (*ROOMS.values(), "wtours.sample", *UPPER))
    if path == REPO / "wtours" / "__init__.py":  # `from wtours import fetch`: the entries, re-exported lazily
        found = [name for name in found if not name.startswith("wtours.workflows")]
    assert not found


@pytest.mark.parametrize("path", [p for room in ROOMS for p in modules(room)], ids=lambda p: str(p.relative_to(REPO)))
def test_no_room_imports_the_cli_the_workflows_or_the_fixtures(path: Path) -> None:
    assert not reaches(imports(path), (*UPPER, "wtours.sample"))


@pytest.mark.parametrize("path", modules("fixtures"), ids=lambda p: p.name)
def test_the_fixtures_stand_on_the_core_alone(path: Path) -> None:
    assert not reaches(imports(path), (*ROOMS.values(), *UPPER))


@pytest.mark.parametrize("path", modules("trainers/training"), ids=lambda p: p.name)
def test_training_imports_nothing_of_evaluation(path: Path) -> None:
    assert not reaches(imports(path), ("wtours.trainers.evaluation",))


def test_the_engine_names_no_method() -> None:
    """Its code, that is (its docstrings may say which methods it trains): a method's behaviour in a step (DINO's
    last-layer freeze, a teacher's EMA momentum) belongs behind the Method hooks."""
    tree = ast.parse((REPO / "trainers" / "training" / "engine.py").read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, (ast.Module, ast.ClassDef,
                  ast.FunctionDef)) and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip
    words = [
        node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else node.value
        for node in ast.walk(tree)
        if isinstance(node, (ast.Name, ast.Attribute))
        or (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings)
    ]
    named = {word for word in ("dino", "dora", "videomae", "last_layer", "momentum") for text in words
             if word in text.lower()}  # fmt: skip
    assert not named


def test_the_cli_calls_workflows_only() -> None:
    assert not reaches(imports(REPO / "wtours" / "cli.py"), tuple(ROOMS.values()))
