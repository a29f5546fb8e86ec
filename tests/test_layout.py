"""The package's shape: the import graph between vidseg's packages reads top-down (no loop, function-local imports
included), and only the backbone modules name a model family."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

PACKAGE = REPO / "vidseg"
FAMILY_MODULES = ("models/cogvideox/", "models/wan/")
FAMILY_NAMES = re.compile(r"CogVideoXTransformer3DModel|WanTransformer3DModel|CogVideoXBackbone|WanBackbone|"
                          r"AutoencoderKLCogVideoX|AutoencoderKLWan|[\"'](?:cogvideox|wan)[\"']")


def unit(module: str) -> str:
    """The unit an import edge is drawn between: ``vidseg.<package or module>`` (``vidseg.models.hub`` ->
    ``vidseg.models``)."""
    return ".".join(module.split(".")[:2])


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        edges = graph.setdefault(unit(module), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "vidseg":  # from vidseg import config
                targets = {f"vidseg.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vidseg."):
                targets = {unit(node.module)}
            elif isinstance(node, ast.Import):
                targets = {unit(alias.name) for alias in node.names if alias.name.startswith("vidseg.")}
            else:
                continue
            edges.update(targets - {unit(module)})
    return graph


def test_no_import_loop_between_packages():
    graph = import_graph()
    state: dict[str, int] = {}
    loops = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                loops.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, loops


def test_only_the_backbone_modules_name_a_family():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(FAMILY_MODULES) or relative == "registry.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if FAMILY_NAMES.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, offenders
