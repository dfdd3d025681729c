"""The layers of docs/architecture.md hold: no module imports a layer above its own (imports inside functions
included), the maths, grading and re-ranking never import Lightning, and modules and data modules never
import each other."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "e2h"

# Module (or package) -> layer, from the bottom up; a module belongs to its longest listed prefix.
LAYERS = {
    "e2h.data.prompts": 0,
    "e2h.data.errors": 0,
    "e2h.generation.seeding": 0,
    "e2h.grading": 1,
    "e2h.data": 2,
    "e2h.text": 3,
    "e2h.generation": 4,
    "e2h.rl": 4,
    "e2h.eval": 5,
    "e2h.training": 5,
    "e2h.modules": 6,
    "e2h.datamodules": 6,
    "e2h.study": 7,
    "e2h.cli": 8,
    "e2h": 8,  # the package's __init__
}
FRAMEWORKS = ("lightning", "torchmetrics")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (``from e2h.x import y`` counts as
    ``e2h.x.y`` when y is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}"))
    return found


def layer(name: str) -> int:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def in_package(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


SOURCES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_layers_cover_every_module():
    assert len(SOURCES) > 50
    for name in SOURCES:
        layer(name)  # a module outside every listed prefix would raise here


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_no_module_imports_a_higher_layer(name):
    higher = sorted(i for i in SOURCES[name] if i.startswith("e2h.") and layer(i) > layer(name))
    assert not higher, f"{name} (layer {layer(name)}) imports {higher}"


def test_the_floor_imports_nothing_of_e2h():
    for name in ("e2h.data.prompts", "e2h.data.errors", "e2h.generation.seeding"):
        assert not [i for i in SOURCES[name] if i.startswith("e2h")], name


def test_maths_grading_and_reranking_never_import_lightning():
    pure = ("e2h.rl", "e2h.grading", "e2h.eval.reranking", "e2h.eval.scoring", "e2h.data", "e2h.text")
    for name, imported in SOURCES.items():
        if in_package(name, *pure):
            assert not [i for i in imported if in_package(i, *FRAMEWORKS)], name


def test_grading_and_data_need_no_torch():
    for name, imported in SOURCES.items():
        if in_package(name, "e2h.grading", "e2h.data"):
            assert not [i for i in imported if in_package(i, "torch", "transformers")], name


def test_modules_and_datamodules_never_import_each_other():
    for name, imported in SOURCES.items():
        if in_package(name, "e2h.datamodules"):
            assert not [i for i in imported if in_package(i, "e2h.modules")], name
        if in_package(name, "e2h.modules"):
            assert not [i for i in imported if in_package(i, "e2h.datamodules")], name


def test_lower_layers_never_import_modules_datamodules_training_or_the_study():
    upper = ("e2h.modules", "e2h.datamodules", "e2h.training", "e2h.study", "e2h.cli")
    for name, imported in SOURCES.items():
        if in_package(name, "e2h.data", "e2h.text", "e2h.grading"):
            assert not [i for i in imported if in_package(i, *upper)], name


def test_only_the_cli_parses_command_lines():
    for name, imported in SOURCES.items():
        if not in_package(name, "e2h.cli") and name != "e2h.grading._verify_worker":
            assert "argparse" not in imported, f"{name} has command-line code; it belongs in e2h/cli"


def test_the_study_report_imports_the_plan_and_nothing_imports_the_report():
    assert "e2h.study.plan" in SOURCES["e2h.study.report"]
    assert not [n for n, imported in SOURCES.items() if "e2h.study.report" in imported and not in_package(n, "e2h.cli")]
