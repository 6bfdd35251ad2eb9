"""No parameter typed ``Any`` where a livedata type is meant, anywhere in the package.

A parameter typed ``Any`` hides what a function depends on (a Vault, a store,
a Version, a batch report, an HTTP answer).  Values that really are anything
are allowed below, each with its reason: decoded JSON, SQL parameters, bytes-like
buffers (``typing`` has no ``Buffer`` before Python 3.12) and keyword arguments
passed through to a library.  A new ``Any`` parameter fails this test and names
the file, the line, the function and the parameter.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "livedata_cli"

# What counts as "typed Any": Any itself or a container of nothing but Any.
ANY_TYPES = {"Any", "Any | None", "Iterable[Any]", "Iterator[Any]", "list[Any]"}

# A file-like object's methods take any bytes-like buffer.
BUFFERS = {("write", "data"), ("write", "b"), ("readinto", "buf")}

# (file, function, parameter): values that are not livedata objects.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("audit/chain.py", "_as_int", "v"): "a field of a decoded event, any JSON value",
    ("audit/chain.py", "_head_ok", "rec"): "a decoded head record, any JSON value until checked",
    ("index/files.py", "_describe", "rec"): "a journal record that failed, perhaps not even an object",
    ("index/search.py", "_all_matches", "params"): "SQL parameters",
    ("index/search.py", "_best_ranked", "params"): "SQL parameters",
    ("index/search.py", "_passing", "params"): "SQL parameters",
    ("index/search.py", "_in_order", "params"): "SQL parameters",
    ("index/search.py", "_lookup", "params"): "SQL parameters",
    ("index/search.py", "_query", "args"): "SQL parameters",
    ("aws.py", "hook", "caught_exception"): "botocore's retry hook passes whatever it caught",
    ("aws.py", "hook", "response"): "botocore's retry hook: a raw response tuple or None",
    ("cli/common.py", "emit", "data"): "a JSON document",
    ("cli/common.py", "render", "task"): "rich's progress task, typed loosely by rich itself",
    ("cli/common.py", "parse_args", "ctx"): "click's context (click types it loosely)",
    ("cli/config_cmds.py", "_show", "value"): "a setting's value, any TOML value",
    ("cli/convert_cmds.py", "raise_interrupt", "_frame"): "a signal handler's frame",
    ("convert/pandoc.py", "_unlink_images", "node"): "a node of pandoc's JSON AST",
    ("settings.py", "_toml", "value"): "any TOML value",
    ("share_recipient.py", "__init__", "src"): "any readable file-like object",
    ("remote/account.py", "_call", "json_body"): "a JSON request body",
    ("remote/client.py", "_send", "json_body"): "a JSON request body",
    ("remote/client.py", "request", "json_body"): "a JSON request body",
    ("stores/api.py", "_post", "body"): "a JSON request body",
    ("server/account_data.py", "doc", "value"): "a JSON document",
    ("server/account_data.py", "_json_array", "items"): "JSON values streamed as an array",
    ("server/account_data.py", "counted", "items"): "JSON values streamed as an array",
    ("server/bodylimit.py", "_strings", "value"): "a parsed JSON value",
}


def _any_parameters() -> list[tuple[str, str, str, int]]:
    """(file, function, parameter, line) of every parameter typed Any, ``*args``
    and ``**kwargs`` left out (they pass a library's arguments through)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if a.annotation is None or ast.unparse(a.annotation) not in ANY_TYPES:
                    continue
                if (node.name, a.arg) not in BUFFERS:
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
