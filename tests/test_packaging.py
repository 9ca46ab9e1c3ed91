"""Packaging: the top-level folders install under the `wtours` namespace (editable and wheel), every
subpackage imports from a built wheel, and the CLI starts without importing heavy libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "torchvision", "timm", "ultralytics", "scenedetect", "ray", "cv2", "yt_dlp", "av", "pandas",
         "matplotlib", "pyarrow"]


def run_python(code: str, *, cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_editable_install_maps_folders_into_the_namespace(tmp_path):
    out = run_python(
        "import importlib.util, wtours.analysis, wtours.pipelines, wtours.trainers, wtours.sample\n"
        "print(wtours.analysis.__file__); print(wtours.pipelines.__file__); print(wtours.trainers.__file__)\n"
        "print(wtours.sample.__file__)\n"
        "print([importlib.util.find_spec(n) is None for n in ('analysis', 'pipelines', 'trainers', 'fixtures')])",
        cwd=tmp_path,
    )
    lines = out.splitlines()
    assert Path(lines[0]) == REPO / "analysis" / "__init__.py"
    assert Path(lines[1]) == REPO / "pipelines" / "__init__.py"
    assert Path(lines[2]) == REPO / "trainers" / "__init__.py"
    assert Path(lines[3]) == REPO / "fixtures" / "sample" / "__init__.py"
    assert lines[4] == "[True, True, True, True]", "generic top-level names must not be importable"


@pytest.mark.parametrize("command", [["--help"], ["fetch", "--help"], ["status", "--help"], ["demo", "--help"],
                                     ["pretrain", "--help"], ["eval", "knn", "--help"], ["compare", "--help"]])
def test_cli_help_imports_no_heavy_library(tmp_path, command):
    """Every command's options come from its request model, imported with the CLI: requests stay light."""
    out = run_python(
        "import sys\nfrom wtours.cli import app\n"
        f"sys.argv = ['wtours', *{command!r}]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))",
        cwd=tmp_path,
    )
    assert out.strip().splitlines()[-1] == "HEAVY []"


def test_cli_lists_every_subcommand_with_help(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "wtours", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for command in ("fetch", "status", "sample", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_built_wheel_installs_and_imports_every_module(tmp_path):
    # Build from a copy of the source files: setuptools' build/ folder in the checkout could otherwise
    # carry stale modules into the wheel.
    source = tmp_path / "source"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name, follow_symlinks=False)
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheel_dir), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = wheel_dir.glob("wtours-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"wtours"}
    assert "wtours/data_manifest.yaml" in names
    presets = sorted((REPO / "trainers" / "presets").glob("*.yaml"))
    assert presets and all(f"wtours/trainers/presets/{preset.name}" in names for preset in presets)
    packages = sorted(
        name[: -len("/__init__.py")].replace("/", ".") for name in names if name.endswith("/__init__.py")
    )
    assert {"wtours", "wtours.analysis", "wtours.pipelines", "wtours.trainers", "wtours.trainers.training",
            "wtours.trainers.evaluation", "wtours.sample"} <= set(packages)
    # Every source folder with an __init__.py made it into the wheel (catches a package missing from
    # pyproject's explicit list).
    for folder, namespace in (("analysis", "wtours.analysis"), ("pipelines", "wtours.pipelines"),
                              ("trainers", "wtours.trainers"), ("fixtures/sample", "wtours.sample"),
                              ("wtours", "wtours")):
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            expected = ".".join([namespace, *relative.parts]) if relative.parts else namespace
            assert expected in packages, f"{expected} missing from the wheel"

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    modules = sorted(
        name[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for name in names
        if name.endswith(".py") and not name.endswith("__main__.py")
    )
    out = run_python(
        "import importlib, wtours\n"
        f"assert wtours.__file__.startswith({str(site)!r}), wtours.__file__\n"
        f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        "print('imported', len(" + repr(modules) + "))",
        cwd=tmp_path, env={"PYTHONPATH": str(site)},
    )
    assert out.strip() == f"imported {len(modules)}"
    result = subprocess.run(
        [sys.executable, "-m", "wtours", "fetch", "--dry-run"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "amsterdam" in result.stdout + result.stderr and "zurich" in result.stdout + result.stderr
