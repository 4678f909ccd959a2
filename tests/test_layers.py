"""The package's layering: every import inside src/rnnkit points down (or within its layer).

Layers, lowest first; a module may import its own layer and any lower one, never a higher one.
Lazy imports inside functions count too (they are parsed, not run).
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"
LAYERS = [
    {"_version", "errors"},
    {"text"},
    {"modelfile"},
    {"nn"},
    {"decoding"},
    {"models"},
    {"loader"},
    {"training", "rescoring"},
    {"report"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def top_part(module: str) -> str:
    """rnnkit.models.rnnlm -> models; rnnkit -> '' (the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every rnnkit import in the file (.py or .pyx)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    text = path.read_text("utf-8")
    if path.suffix == ".pyx":  # Cython: keep only Python import lines, which ast can parse
        text = "\n".join(line.strip() if line.lstrip().startswith(("import ", "from "))
                          and " cimport " not in line else "" for line in text.splitlines())
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            found += [(node.lineno, t) for t in targets if t.split(".")[0] == "rnnkit"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "rnnkit"]
    return found


FILES = sorted(p for p in SRC.rglob("*") if p.suffix in (".py", ".pyx"))


def test_every_module_belongs_to_a_layer():
    parts = {top_part(module_name(p)) for p in FILES} - {""}
    assert parts <= set(RANK), f"modules outside the layers: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    me = top_part(module_name(path))
    if me == "":
        return  # the package root re-exports the public API from any layer
    wrong = []
    for line, target in imports(path):
        part = top_part(target)
        if part == "":
            wrong.append(f"line {line}: imports the package root `rnnkit` (import from the "
                         f"module that defines the name instead)")
        elif RANK[part] > RANK[me]:
            wrong.append(f"line {line}: {me} (layer {RANK[me]}) imports {target} "
                         f"(layer {RANK[part]})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_upward_and_lazy_imports(tmp_path):
    bad = tmp_path / "rnnkit" / "text" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from ..models import rnnlm\n    from .. import loader\n")
    global SRC
    saved, SRC = SRC, tmp_path / "rnnkit"
    try:
        found = [t for _, t in imports(bad)]
    finally:
        SRC = saved
    assert found == ["rnnkit.models", "rnnkit.loader"]
