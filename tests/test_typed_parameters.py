"""No parameter typed ``Any`` where a livedata type is meant, in audit, index and doctor.

A parameter typed ``Any`` hides what a function depends on (a Vault, a Trail,
a Check, a search hit).  Values that really are anything (decoded JSON, SQL
parameters and rows) are listed below with their reason; a new ``Any``
parameter fails this test and names the file, the function and the parameter.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "livedata_cli"
CHECKED = ("audit/", "index/", "doctor.py", "cli/audit_cmds.py", "cli/search_cmds.py", "cli/doctor.py")

# (file, function, parameter): values that are not livedata objects.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("audit/chain.py", "_as_int", "v"): "a field of a decoded event, any JSON value",
    ("audit/chain.py", "_head_ok", "rec"): "a decoded head record, any JSON value until checked",
    ("index/files.py", "_describe", "rec"): "a journal record that failed, perhaps not even an object",
}


def _any_parameters() -> list[tuple[str, str, str, int]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(CHECKED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if a.annotation is None:
                    continue
                text = ast.unparse(a.annotation)
                # Any itself, or a container of Any (list[Any], Iterable[Any], Any | None);
                # dict[str, Any] (an event or a record, as decoded JSON) and SQL
                # parameter lists, list[Any] in index/search.py, are data, not objects.
                if text in ("Any", "Any | None", "Iterable[Any]", "Iterator[Any]") or (
                    text == "list[Any]" and rel != "index/search.py"
                ):
                    found.append((rel, node.name, a.arg, node.lineno))
    return found


def test_no_parameter_is_typed_any_where_a_livedata_type_is_meant() -> None:
    wrong = [
        f"livedata_cli/{rel}:{line}: {func}({arg}: Any)"
        for rel, func, arg, line in _any_parameters()
        if (rel, func, arg) not in ALLOWED
    ]
    assert not wrong, "parameters typed Any (name the livedata type, or a Protocol of what is used):\n" + "\n".join(wrong)


def test_the_allowed_list_holds_only_what_is_still_there() -> None:
    present = {(rel, func, arg) for rel, func, arg, _line in _any_parameters()}
    assert not set(ALLOWED) - present, set(ALLOWED) - present
