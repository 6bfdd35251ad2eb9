"""journal.validate: a record replay could not apply never reaches the store,
and the lines it returns are the ones a journal holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livedata_cli import journal
from livedata_cli.errors import LivedataError

PUT: dict[str, Any] = {
    "t": "put", "vid": "ab" * 16, "path": "d/f.txt", "kind": "file", "object": "cd" * 16, "offset": 0,
    "length": 60, "size": 12, "mtime": 1.5, "mode": 0o644, "mime": "text/plain", "hash": "ef" * 32,
    "header_hash": "01" * 32, "wrapped_key": "23" * 60, "key_id": "k", "created": 1796684523.5,
    "derived_from": None, "tags": ["a"], "notes": "",
}

values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def right_type(value: Any, types: tuple[type, ...]) -> bool:
    """The rule, as written out field by field."""
    return isinstance(value, types) and not isinstance(value, bool)


@given(field=st.sampled_from(sorted(journal._REQUIRED["put"])), value=values)
def test_a_put_record_with_a_field_of_another_type_is_refused(field: str, value: Any) -> None:
    rec = {**PUT, field: value}
    ok = right_type(value, journal._REQUIRED["put"][field]) and (field != "wrapped_key" or _hex(value))
    if ok:
        assert journal.validate([rec]) == [journal.line(rec)]
    else:
        with pytest.raises(LivedataError, match="refusing to write a put record"):
            journal.validate([rec])


def _hex(value: Any) -> bool:
    try:
        bytes.fromhex(value)
    except (TypeError, ValueError):
        return False
    return True


def test_a_missing_field_is_named() -> None:
    rec = {k: v for k, v in PUT.items() if k != "key_id"}
    with pytest.raises(LivedataError, match="field 'key_id' is NoneType"):
        journal.validate([rec])


def test_a_subclass_of_a_right_type_is_accepted() -> None:
    class Name(str):
        pass

    rec = {**PUT, "path": Name("d/g.txt"), "created": 7}
    assert json.loads(journal.validate([rec])[0]) == {**PUT, "path": "d/g.txt", "created": 7}


def test_text_that_is_not_utf8_is_refused_with_its_path() -> None:
    with pytest.raises(LivedataError, match="refusing to write a put record of 'd/\\\\udcff'"):
        journal.validate([{**PUT, "path": "d/\udcff"}])


def test_the_lines_decode_to_the_records() -> None:
    records = [PUT, {"t": "rm", "path": "d/f.txt", "time": 2.0}, {"t": "tag", "vid": "ab" * 16, "add": ["x"]}]
    blob = journal.encode_lines(b"k" * 32, "v" * 32, "journal/x", journal.validate(records))
    assert journal.decode(b"k" * 32, "v" * 32, "journal/x", blob) == records
