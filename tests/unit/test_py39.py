"""zelador runs on Debian 11's Python 3.9, where `X | None` is fine in an annotation (postponed by
`from __future__ import annotations`) but a TypeError anywhere else: in a type alias, a cast, an
isinstance. This test finds such unions outside annotations (the Debian 11 system test found
one in alerts/channels the slow way: zelador.service would not start)."""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).parents[2] / "src" / "zelador"
TYPES = {"int", "str", "float", "bytes", "bool", "list", "dict", "tuple", "set", "frozenset",
         "object", "type"}


def type_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in TYPES or node.id[:1].isupper()
    if isinstance(node, ast.Subscript):
        return True
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)


class Finder(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[int] = []

    def visit_arg(self, node: ast.arg) -> None:  # annotations are postponed: skip them
        return

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for child in (*node.decorator_list, *node.body, *node.args.defaults,
                      *[d for d in node.args.kw_defaults if d is not None]):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr) and type_like(node.left) and type_like(node.right):
            self.found.append(node.lineno)
        self.generic_visit(node)


def test_no_type_union_is_evaluated_at_run_time() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        finder = Finder()
        finder.visit(ast.parse(path.read_text()))
        problems += [f"{path.relative_to(SRC)}:{line}" for line in finder.found]
    assert problems == [], "X | Y outside an annotation breaks Python 3.9: " + ", ".join(problems)


def test_the_check_finds_an_alias() -> None:
    finder = Finder()
    finder.visit(ast.parse("A = Callable[[int], tuple[int | None, bytes]]\n"
                           "def f(x: int | None) -> str | None:\n    return None\n"))
    assert finder.found == [1]
