"""The container image carries every module the project declares (Docker is not on CI)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def copied_paths() -> set[str]:
    copied: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _destination = line.split()[1:]
            copied.update(source.rstrip("/") for source in sources)
    return copied


def test_dockerfile_copies_every_declared_module_and_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    modules = {f"{name}.py" for name in setuptools["py-modules"]}
    packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
    missing = (modules | packages) - copied_paths()
    assert not missing, f"Dockerfile does not COPY {sorted(missing)}"


def test_every_top_level_module_is_declared():
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["py-modules"]
    )
    on_disk = {path.stem for path in ROOT.glob("*.py")}
    assert on_disk <= declared, f"not installed by pip: {sorted(on_disk - declared)}"
