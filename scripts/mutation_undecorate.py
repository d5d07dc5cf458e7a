"""Make decorated functions visible to mutmut, in the scratch copy that scripts/mutation.sh mutates.

mutmut 3 skips every decorated function (it cannot copy decorators into its trampolines safely),
which would leave ``@torch.no_grad()`` evaluation and prediction and the ``@contextmanager`` trial
lock unmutated. For the decorators listed in ``REWRITTEN`` this rewrites

    @torch.no_grad()                       def evaluate(...):
    def evaluate(...):            into          ...
        ...                                evaluate = torch.no_grad()(evaluate)

which is the same function at run time. Only the scratch copy is rewritten, never the checkout.

    python scripts/mutation_undecorate.py FILE.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import libcst as cst

REWRITTEN = {"torch.no_grad()", "contextlib.contextmanager"}


class Undecorate(cst.CSTTransformer):
    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # only module- and class-level functions: mutmut mutates no nested ones

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.FunctionDef | cst.FlattenSentinel[cst.BaseStatement]:
        if not updated.decorators:
            return updated
        names = [cst.Module([]).code_for_node(decorator.decorator) for decorator in updated.decorators]
        if not all(name in REWRITTEN for name in names):
            return updated
        wrapped: cst.BaseExpression = cst.Name(updated.name.value)
        for name in reversed(names):  # the decorator nearest the def applies first
            wrapped = cst.Call(cst.parse_expression(name), [cst.Arg(wrapped)])
        rebind = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(updated.name.value))], wrapped)])
        return cst.FlattenSentinel([updated.with_changes(decorators=[]), rebind])


def main(path: Path) -> None:
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    path.write_text(module.visit(Undecorate()).code, encoding="utf-8")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        main(Path(name))
