"""The library's import graph has no cycle: model modules depend only on base, data, metrics (and each other's
building blocks), never on the catalogue that collects them or the store that loads them. Imports inside functions
count too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_models"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return {name.split(".")[0] for name in found}


def test_no_module_imports_one_that_imports_it_back():
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}

    def reaches(start: str, target: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False
    cycles = [m for m in graph if reaches(m, m, {m})]
    assert not cycles, f"modules in an import cycle: {cycles}"


def test_model_modules_do_not_import_the_catalogue_or_the_store():
    for family in ("classifiers", "capsnet", "autoencoders", "vae", "gans", "multimnist", "judge"):
        assert not {"catalogue", "store", "transfer", "training"} & imports_of(PACKAGE / f"{family}.py"), family
