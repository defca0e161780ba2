"""Layering: library modules never import a command-line module, the demo command or the
package root; command-line modules are leaves (nothing but the CLI entry points imports them).
Read from the source with ``ast``, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "surgsam"
# modules that parse arguments and call the library (and the entry points that load them)
CLI_MODULES = {
    "surgsam.cli",
    "surgsam.__main__",
    "surgsam.eval.__main__",
    "surgsam.demo",
    "surgsam.hub",
    "surgsam.options",
    "surgsam.export.run",
}


def _module_name(path: Path) -> str:
    parts = ("surgsam",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_cli(name: str) -> bool:
    return name in CLI_MODULES or name.endswith(".cli")


def _imports(path: Path) -> set[str]:
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "surgsam" and all(a.name == "__version__" for a in node.names):
                continue  # the version string is metadata, not the lazy public API
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from .x import cli`
    return {n for n in found if n == "surgsam" or n.startswith("surgsam.")}


def test_library_modules_import_no_cli_module_demo_or_package_root():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        mod = _module_name(path)
        if _is_cli(mod) or mod == "surgsam":
            continue
        for target in _imports(path):
            if (
                target == "surgsam"
                or any(target == c or target.startswith(c + ".") for c in CLI_MODULES)
                or target.endswith(".cli")
                or ".cli." in target
            ):
                bad.append(f"{mod} imports {target}")
    assert not bad, "library modules must not import command-line modules:\n" + "\n".join(bad)


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    probe = SRC / "app" / "jobs.py"
    names = _imports(probe)
    assert "surgsam.referring.build" in names and "surgsam.modeling.embedded" in names


def test_demo_constants_match_the_library():
    from surgsam import demo
    from surgsam.data.synth import DEMO_CLIP_SEED
    from surgsam.modeling.embedded import DEMO_MODEL_NAME

    assert (demo.DEMO_CLIP_SEED, demo.DEMO_MODEL_NAME) == (DEMO_CLIP_SEED, DEMO_MODEL_NAME)
