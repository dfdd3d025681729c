"""An installed e2h (a wheel, not a source checkout) carries its configs as ``e2h/configs`` and the study finds
them there; pyproject.toml lists every e2h subpackage (it lists them, since ``e2h.configs`` is the checkout's
configs/ folder mapped into the package)."""

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_lists_every_subpackage_and_ships_the_configs():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "e2h").rglob("__init__.py")}
    assert found | {"e2h.configs"} == set(setuptools["packages"]), "add new e2h subpackages to pyproject.toml"
    assert setuptools["package-dir"] == {"e2h.configs": "configs"}
    shipped = {p.relative_to(REPO / "configs") for p in (REPO / "configs").glob(setuptools["package-data"]["e2h.configs"][0])}
    assert shipped == {p.relative_to(REPO / "configs") for p in (REPO / "configs").rglob("*.yaml")}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_non_editable_install_finds_its_configs(tmp_path):
    """`pip install .` (into a folder, no dependencies): the installed plan's configs exist, inside the install."""
    source, target = tmp_path / "source", tmp_path / "site"
    # a copy of what the build reads, so that the build writes nothing into the checkout
    for name in ("e2h", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # Build with this environment's setuptools when it is new enough (no download), else in pip's isolation.
    major = int(version("setuptools").split(".")[0]) if _has("setuptools") else 0
    isolation = ["--no-build-isolation"] if major >= 77 else []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(target),
                    str(source)], check=True, cwd=tmp_path)
    code = (
        "import e2h, sys; from e2h.study.plan import config_root, math_plan, tiny_plan; from pathlib import Path\n"
        "assert Path(e2h.__file__).is_relative_to(sys.argv[1]), e2h.__file__\n"
        "assert config_root() == Path(sys.argv[1]) / 'e2h' / 'configs', config_root()\n"
        "for plan in (tiny_plan(Path('s')), math_plan(Path('s'), 'M', 'P')):\n"
        "    configs = [Path(a[i + 1]) for s in plan.stages for a in [s.args] for i, x in enumerate(a) if x == '--config']\n"
        "    assert configs and all(c.is_file() and c.is_relative_to(sys.argv[1]) for c in configs)\n"
    )
    # run outside the checkout, the install first on the path (before the editable checkout)
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(target)})


def _has(package: str) -> bool:
    try:
        version(package)
        return True
    except Exception:
        return False
