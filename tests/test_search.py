"""Search, tags and notes: the query language, filters, and the index kept in
step with every journal record (and identical after 'sync --rebuild')."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TEST_RUN, Cli, assert_one_line_error, run_on_tty, write
from livedata_cli.index.search import QueryError, parse_query, parse_size, parse_when

pytestmark = pytest.mark.inprocess

# -- the query language, in-process ------------------------------------------------


@pytest.mark.parametrize(
    "query,expected",
    [
        ("invoice", '("invoice")'),
        ("tax 2025", '("tax") AND ("2025")'),
        ('"tax return" 2025', '("tax return") AND ("2025")'),
        ("rep*", '("rep"*)'),
        ('"annual rep"*', '("annual rep"*)'),
        ("invoice OR receipt", '("invoice" OR "receipt")'),
        ("tax 2025 OR 2024", '("tax") AND ("2025" OR "2024")'),
        ("report -draft", '(("report")) NOT ("draft")'),
        ("report NOT draft -old", '(("report")) NOT ("draft" OR "old")'),
        ("tag:finance q3", '(tags : "finance") AND ("q3")'),
        ('name:"tax return"', '(name : "tax return")'),
        ("note:bank*", '(notes : "bank"*)'),
        ("type:pdf", '(mime : "pdf")'),
        ("http://example.com", '("http://example.com")'),
        ("or and", '("or") AND ("and")'),
        ("a AND b", '("a") AND ("b")'),
        ("report !!!", '("report")'),
    ],
)
def test_query_is_parsed_into_quoted_fts(query: str, expected: str) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize("query", ["", "   ", "!!!", "- ,"])
def test_empty_query_is_none(query: str) -> None:
    assert parse_query(query) is None


@pytest.mark.parametrize(
    "query",
    ['"unclosed', "OR tax", "tax OR", "tax OR OR x", "-only", "NOT", "a OR -b", "re*port", "*", 'a"b',
     "name:", '"x" OR !!!', "tag:", 'bogus:"x"'],
)  # fmt: skip
def test_bad_query_is_query_error(query: str) -> None:
    with pytest.raises(QueryError) as e:
        parse_query(query)
    assert "\n" not in e.value.message and "syntax:" in e.value.message


def test_user_text_cannot_inject_fts_syntax() -> None:
    """Quotes, parentheses, colons and keywords in words are data, never syntax."""
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(path, name, tags, notes, mime, text)")
    con.execute("INSERT INTO t VALUES ('a', 'b', 'c', 'd', 'e', 'f')")
    for query in ["a) OR (b", "NEAR(a b)", "col:x", "^a", "{a b}:c", "a + b", "'quoted'", "a\\b", "é*", "tag:(x"]:
        expr = parse_query(query)
        assert expr is not None
        con.execute("SELECT * FROM t WHERE t MATCH ?", (expr,)).fetchall()


@pytest.mark.parametrize(
    "text,expected",
    [("500", 500), ("10KiB", 10240), ("1MB", 1_000_000), ("1mib", 1048576), ("2G", 2 * 1024**3),
     ("1.5KB", 1500), (" 3 kb ", 3000)],
)  # fmt: skip
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1XB", "-1MB", "1 M B", "ten"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(Exception) as e:
        parse_size(text)
    assert getattr(e.value, "exit_code", None) == 2


def test_dates() -> None:
    now = dt.datetime(2026, 3, 10, 15, 0).timestamp()
    assert parse_when("7d", now=now) == now - 7 * 86400
    assert parse_when("12h", now=now) == now - 12 * 3600
    assert parse_when("90m", now=now) == parse_when("90min", now=now) == now - 90 * 60  # --at and --since alike
    assert parse_when("2026-01-01", now=now) == dt.datetime(2026, 1, 1).timestamp()
    assert parse_when("2026-01-01", end_of_day=True, now=now) == dt.datetime(2026, 1, 2).timestamp()
    assert parse_when("2026-01-01T09:30", now=now) == dt.datetime(2026, 1, 1, 9, 30).timestamp()
    assert parse_when("today", now=now) == dt.datetime(2026, 3, 10).timestamp()
    for bad in ["yesterday-ish", "2026-13-01", "7 days", "soon"]:
        with pytest.raises(Exception) as e:
            parse_when(bad)
        assert getattr(e.value, "exit_code", None) == 2


# -- one vault with a small library, shared by the read-only tests -------------------

FILES = {
    "finance/invoice-march.pdf": b"%PDF-1.4 " + b"x" * 2_000_000,
    "finance/tax-return-2025.pdf": b"%PDF-1.4 small",
    "finance/tax-notes-2025.txt": "tax figures for the return, 2025\n",
    "work/quarterly-report.txt": "the quarterly zebra numbers\n",
    "work/report-draft.txt": "draft of the report\n",
    "photos/beach.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
    "photos/café-menu.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 64,
    "old/receipt.txt": "a receipt\n",
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(
        LIVEDATA_HOME=str(home),
        LIVEDATA_PASSPHRASE="search tests",
        LIVEDATA_TESTONLY_WEAKEN_KDF="1",
        LIVEDATA_TESTONLY_RUN=TEST_RUN,
        LIVEDATA_NO_KEYRING="1",
    )
    return env


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("searchlib")
    work = root / "work"
    for rel, body in FILES.items():
        write(work / "src" / rel, body)
    cli = Cli(_env(root / "home"), work)
    cli.ok("init")
    cli.ok("upload", "src", "--recursive", "--as", "")
    cli.ok("tag", "finance/invoice-march.pdf", "finance", "q3")
    cli.ok("tag", "finance/tax-return-2025.pdf", "finance", "tax")
    cli.ok("tag", "photos/café-menu.jpg", "holiday")
    cli.ok("note", "finance/tax-return-2025.pdf", "signed copy, original with the bank")
    cli.ok("rm", "old/receipt.txt")
    yield cli


def paths(cli: Cli, *args: str) -> list[str]:
    r = cli("search", *args, "--json")
    assert r.code == 0, r.stderr
    return [x["path"] for x in r.json()["results"]]


def test_word_finds_names_best_first(lib: Cli) -> None:
    found = paths(lib, "tax")
    assert set(found) == {"finance/tax-return-2025.pdf", "finance/tax-notes-2025.txt"}
    assert paths(lib, "invoice") == ["finance/invoice-march.pdf"]
    # A word in the name ranks above the same word only in a note or path.
    assert paths(lib, "report")[0] in ("work/quarterly-report.txt", "work/report-draft.txt")


def test_words_are_anded_and_case_and_accents_ignored(lib: Cli) -> None:
    assert paths(lib, "TAX", "return") == ["finance/tax-return-2025.pdf"]
    assert paths(lib, "cafe") == ["photos/café-menu.jpg"]
    assert paths(lib, "CAFÉ menu") == ["photos/café-menu.jpg"]


def test_phrase(lib: Cli) -> None:
    assert paths(lib, '"tax return"') == ["finance/tax-return-2025.pdf"]
    assert paths(lib, '"return tax"') == []


def test_prefix(lib: Cli) -> None:
    assert set(paths(lib, "quart*")) == {"work/quarterly-report.txt"}
    assert set(paths(lib, "rep*")) == {"work/quarterly-report.txt", "work/report-draft.txt"}


def test_or_and_exclusion(lib: Cli) -> None:
    assert set(paths(lib, "invoice OR beach")) == {"finance/invoice-march.pdf", "photos/beach.png"}
    assert paths(lib, "report -draft") == ["work/quarterly-report.txt"]


def test_tags_are_searchable_and_filter(lib: Cli) -> None:
    assert paths(lib, "holiday") == ["photos/café-menu.jpg"]
    assert paths(lib, "tag:q3") == ["finance/invoice-march.pdf"]
    assert paths(lib, "--tag", "finance") == ["finance/invoice-march.pdf", "finance/tax-return-2025.pdf"]
    assert paths(lib, "--tag", "finance", "--tag", "q3") == ["finance/invoice-march.pdf"]
    assert paths(lib, "tax", "--tag", "finance") == ["finance/tax-return-2025.pdf"]
    assert paths(lib, "--tag", "fin") == []  # tags match whole, not as words


def test_notes_are_searchable(lib: Cli) -> None:
    r = lib.ok("search", "bank", "--json").json()
    assert [x["path"] for x in r["results"]] == ["finance/tax-return-2025.pdf"]
    assert r["results"][0]["notes"] == "signed copy, original with the bank"
    assert "[bank]" in r["results"][0]["snippet"]
    assert paths(lib, "note:signed") == ["finance/tax-return-2025.pdf"]


def test_type_filter(lib: Cli) -> None:
    pdfs = ["finance/invoice-march.pdf", "finance/tax-return-2025.pdf"]
    assert paths(lib, "--type", "application/pdf") == pdfs
    assert paths(lib, "--type", "pdf") == pdfs
    assert paths(lib, "--type", "image/*") == ["photos/beach.png", "photos/café-menu.jpg"]
    assert paths(lib, "--type", "image") == ["photos/beach.png", "photos/café-menu.jpg"]
    assert paths(lib, "--type", "jpg") == ["photos/café-menu.jpg"]
    assert paths(lib, "tax", "--type", "text/plain") == ["finance/tax-notes-2025.txt"]
    assert paths(lib, "--type", "png", "--type", "pdf") == [*pdfs, "photos/beach.png"]


def test_mime_comes_from_content_not_name(lib: Cli, tmp_path: Path) -> None:
    r = lib.ok("search", "beach", "--json").json()["results"][0]
    assert r["mime"] == "image/png"


def test_size_filters(lib: Cli) -> None:
    assert paths(lib, "--larger-than", "1MB") == ["finance/invoice-march.pdf"]
    assert "finance/invoice-march.pdf" not in paths(lib, "--smaller-than", "1MiB")
    assert paths(lib, "finance", "--larger-than", "1KB", "--smaller-than", "10MB") == ["finance/invoice-march.pdf"]


def test_date_filters(lib: Cli) -> None:
    everything = paths(lib, "--since", "7d")
    assert len(everything) == len(FILES) - 1  # one is in the trash
    assert paths(lib, "--since", (dt.date.today() + dt.timedelta(days=1)).isoformat()) == []
    assert paths(lib, "--until", "2020-01-01") == []
    assert len(paths(lib, "--until", dt.date.today().isoformat())) == len(FILES) - 1


def test_deleted_files_only_with_trash(lib: Cli) -> None:
    assert paths(lib, "receipt") == []
    assert paths(lib, "receipt", "--trash") == ["old/receipt.txt"]
    assert paths(lib, "--trash", "--type", "text/*") == ["old/receipt.txt"]


def test_contents_not_searched_unless_opted_in(lib: Cli) -> None:
    assert paths(lib, "zebra") == []


def test_json_shape(lib: Cli) -> None:
    r = lib("search", "tax", "--json")
    assert r.code == 0 and r.stderr == ""
    doc = r.json()
    assert set(doc) == {"query", "results", "count", "truncated"}
    assert doc["query"] == "tax" and doc["count"] == 2 and doc["truncated"] is False
    hit = doc["results"][0]
    assert {"path", "id", "size", "tags", "score", "mime", "created", "notes", "snippet"} <= set(hit)
    assert isinstance(hit["score"], float) and hit["score"] > 0
    assert len(hit["id"]) == 32 and isinstance(hit["size"], int) and isinstance(hit["tags"], list)
    scores = [h["score"] for h in doc["results"]]
    assert scores == sorted(scores, reverse=True)
    listing = lib.ok("search", "--tag", "finance", "--json").json()["results"]
    assert all(h["score"] is None and h["snippet"] is None for h in listing)


def test_plain_output_is_one_line_per_result(lib: Cli) -> None:
    r = lib.ok("search", "tax")
    lines = r.out.splitlines()
    assert len(lines) == 2 and "\x1b[" not in r.out
    path, size, day, tags, snippet = lines[0].split("\t")
    assert path.startswith("finance/tax-") and day == dt.date.today().isoformat()
    assert size.endswith("B") and tags in ("-", "finance,tax") and "[tax]" in snippet


def test_limit(lib: Cli) -> None:
    r = lib.ok("search", "--type", "text/*", "--limit", "1", "--json").json()
    assert r["count"] == 1 and r["truncated"] is True
    r = lib("search", "--type", "text/*", "--limit", "1")
    assert r.code == 0 and len(r.out.splitlines()) == 1 and "--limit" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["search", '"unclosed'],
        ["search", "tax OR"],
        ["search", "--", "-draft"],
        ["search", "re*port"],
        ["search"],
        ["search", "!!!"],
        ["search", "x", "--since", "last tuesday"],
        ["search", "x", "--until", "2026-02-30"],
        ["search", "x", "--larger-than", "1XB"],
        ["search", "x", "--smaller-than", "big"],
        ["search", "x", "--type", "not a type"],
        ["search", "x", "--limit", "-1"],
    ],
)
def test_bad_input_is_exit_2_one_line(lib: Cli, args: list[str]) -> None:
    r = lib(*args)
    assert_one_line_error(r, 2)
    assert r.stdout == b""


def test_search_needs_no_key_and_imports_nothing_heavy(lib: Cli) -> None:
    env = {k: v for k, v in lib.env.items() if k != "LIVEDATA_PASSPHRASE"}
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "livedata_cli", "search", "tax", "--tag", "finance"],
        capture_output=True, text=True, env=env, cwd=lib.cwd,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("finance/tax-return-2025.pdf\t")
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    heavy = ("livedata_cli.vault.core", "livedata_cli.crypto", "livedata_cli.keys.slots", "livedata_cli.keys.unlock", "keyring", "cryptography",
             "argon2", "rich", "boto3", "httpx")  # fmt: skip
    assert not {m for m in loaded if m.startswith(heavy)}


def test_no_vault_is_exit_3(cli: Cli) -> None:
    assert_one_line_error(cli("search", "tax"), 3)


# -- changes, one vault per test ------------------------------------------------


def test_note_command(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "report.pdf", b"%PDF-1.4 r")
    vault_cli.ok("upload", "report.pdf")
    r = vault_cli("note", "report.pdf")
    assert r.code == 0 and r.out == "" and "no note" in r.stderr
    vault_cli.ok("note", "report.pdf", "signed copy, original with the bank")
    assert vault_cli.ok("note", "report.pdf").out == "signed copy, original with the bank\n"
    vault_cli.ok("note", "report.pdf", "second line", "--append")
    assert vault_cli.ok("note", "report.pdf", "--json").json()["notes"] == (
        "signed copy, original with the bank\nsecond line"
    )
    assert "# signed copy" in vault_cli.ok("ls", "--long").out
    assert "second line" in vault_cli.ok("info", "report.pdf").out
    assert paths(vault_cli, "second") == ["report.pdf"]
    vault_cli.ok("note", "report.pdf", "--clear")
    assert paths(vault_cli, "bank") == []
    assert_one_line_error(vault_cli("note", "missing.pdf", "x"), 3)
    assert_one_line_error(vault_cli("note", "report.pdf", "--clear", "--append"), 2)
    assert_one_line_error(vault_cli("note", "report.pdf", "x" * (65 * 1024)), 2)


def test_index_follows_tags_versions_trash_and_purge(vault_cli: Cli) -> None:
    f = write(vault_cli.cwd / "plan.txt", "one")
    vault_cli.ok("upload", "plan.txt", "--tag", "alpha")
    vault_cli.ok("note", "plan.txt", "kept with the first version")
    write(f, "two, longer")
    os.utime(f, (1_700_000_000, 1_700_000_000))
    vault_cli.ok("upload", "plan.txt")  # a new version inherits tags and note
    assert paths(vault_cli, "alpha") == ["plan.txt"]
    assert paths(vault_cli, "kept") == ["plan.txt"]
    assert paths(vault_cli, "plan", "--all-versions") == ["plan.txt", "plan.txt"]
    vault_cli.ok("tag", "plan.txt", "beta")
    vault_cli.ok("tag", "plan.txt", "alpha", "--remove")
    assert paths(vault_cli, "alpha") == [] and paths(vault_cli, "beta") == ["plan.txt"]
    assert paths(vault_cli, "--tag", "beta") == ["plan.txt"]
    vault_cli.ok("rm", "plan.txt")
    assert paths(vault_cli, "plan") == [] and paths(vault_cli, "plan", "--trash") == ["plan.txt"]
    vault_cli.ok("restore", "plan.txt")
    assert paths(vault_cli, "plan") == ["plan.txt"]
    vault_cli.ok("rm", "plan.txt", "--purge")
    assert paths(vault_cli, "plan") == [] and paths(vault_cli, "plan", "--trash", "--all-versions") == []


def test_index_content_is_opt_in_and_survives_rebuild(vault_cli: Cli, tmp_path: Path) -> None:
    notes = vault_cli.cwd / "notes"
    write(notes / "a.md", "# Minutes\nthe quarterly zebra meeting\n")
    write(notes / "b.txt", "plain words only\n")
    write(notes / "c.bin", b"\x00\x01zebra\x00")
    vault_cli.ok("upload", "notes", "--recursive")
    assert paths(vault_cli, "zebra") == []
    vault_cli.ok("upload", "notes", "--recursive", "--index-content")  # unchanged files: indexed now
    r = vault_cli.ok("search", "zebra", "--json").json()["results"]
    assert [x["path"] for x in r] == ["notes/a.md"]
    assert "[zebra]" in r[0]["snippet"]
    assert paths(vault_cli, "text:plain") == ["notes/b.txt"]
    # Indexed once: a third run stores nothing.
    again = vault_cli.ok("upload", "notes", "--recursive", "--index-content", "--json").json()
    assert {i["status"] for i in again["items"]} == {"unchanged"}
    # Another machine: the text came through the encrypted journal.
    other = Cli({**vault_cli.env, "LIVEDATA_HOME": str(tmp_path / "home2")}, vault_cli.cwd)
    other.ok("init", "--store", str(tmp_path / "home" / "store"))
    assert paths(other, "zebra") == ["notes/a.md"]


def test_only_the_first_64_kib_of_contents_is_indexed(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "long.txt", "filler " * 10_000 + "needle\n")  # ~70 KB
    vault_cli.ok("upload", "long.txt", "--index-content")
    assert paths(vault_cli, "filler") == ["long.txt"]
    assert paths(vault_cli, "needle") == []


def test_results_identical_after_rebuild_elsewhere(vault_cli: Cli, tmp_path: Path) -> None:
    for rel, body in FILES.items():
        write(vault_cli.cwd / "src" / rel, body)
    vault_cli.ok("upload", "src", "--recursive", "--as", "", "--index-content")
    vault_cli.ok("tag", "finance/invoice-march.pdf", "finance", "q3")
    vault_cli.ok("tag", "finance/invoice-march.pdf", "q3", "--remove")
    vault_cli.ok("note", "work/report-draft.txt", "first draft, see the bank letter")
    vault_cli.ok("rm", "old/receipt.txt")
    queries = [["tax"], ["rep*"], ["--tag", "finance"], ["bank"], ["zebra"], ["receipt", "--trash"],
               ["--type", "image/*"], ["report OR invoice", "--all-versions"]]  # fmt: skip

    def results(cli: Cli) -> list[object]:
        return [cli.ok("search", *q, "--json").json() for q in queries]

    before = results(vault_cli)
    assert before[4]["count"] == 1  # zebra: from the contents
    other = Cli({**vault_cli.env, "LIVEDATA_HOME": str(tmp_path / "home2")}, vault_cli.cwd)
    other.ok("init", "--store", str(tmp_path / "home" / "store"))
    assert results(other) == before
    vault_cli.ok("sync", "--rebuild")
    assert results(vault_cli) == before


def test_migration_indexes_rows_already_present(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "old-index.txt", "x")
    vault_cli.ok("upload", "old-index.txt", "--tag", "legacy")
    # An index from before search existed: no FTS table, migration not recorded.
    db = sqlite3.connect(tmp_path / "home" / "index.sqlite")
    db.execute("DROP TABLE search_fts")
    db.execute("DROP INDEX versions_newest")  # made by a later migration, on the column below
    db.execute("ALTER TABLE versions DROP COLUMN newest")
    db.execute("DELETE FROM migrations WHERE name IN ('0003_search', '0015_newest_listing')")
    db.commit()
    db.close()
    assert paths(vault_cli, "legacy") == ["old-index.txt"]
    assert paths(vault_cli, "--tag", "legacy") == ["old-index.txt"]


def test_search_cmd_registered_in_help(cli: Cli) -> None:
    out = cli.ok("--help").out
    assert "search" in out and "note" in out


def _on_tty(cli: Cli, *args: str) -> str:
    """Output of livedata run with a pseudo-terminal as stdout."""
    env = {k: v for k, v in cli.env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return run_on_tty(list(args), {**env, "TERM": "xterm-256color"}, cli.cwd)[1]


def test_terminal_output_highlights_and_is_safe(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "x\x1b[2Jy.txt", "text")
    vault_cli.ok("upload", "x\x1b[2Jy.txt", "--tag", "finance")
    vault_cli.ok("note", "x\x1b[2Jy.txt", "signed copy,\noriginal with the bank")
    out = _on_tty(vault_cli, "search", "bank")
    assert "x\\x1b[2Jy.txt" in out and "\x1b[2J" not in out  # no terminal control from a name: escaped
    assert "#finance" in out and "original with the" in out
    assert "\x1b[1;33mbank" in out  # the matched word, highlighted
    plain = vault_cli.ok("search", "bank").out
    # A pipe gets no colours, and the name escaped as in every listing (a pipe often ends at a terminal).
    assert "\x1b[1;33m" not in plain and plain.startswith("x\\x1b[2Jy.txt\t")


def test_best_first_shortcut_matches_full_ranking(tmp_path: Path) -> None:
    """Ranking looks up only the leading matches; it must give exactly the
    order of ranking everything (score, then path), ties, trash and filters included."""
    import random

    from livedata_cli.index.core import Index
    from livedata_cli.index.search import Filters, search

    rng = random.Random(7)
    index = Index(tmp_path / "index.sqlite")
    records: list[dict[str, object]] = []
    for i in range(8000):  # same-shaped names: thousands of equal scores
        word = rng.choice(["invoice", "report"])
        records.append({
            "t": "put", "vid": f"{i:032x}", "path": f"d{i % 7}/{word}-{rng.choice(['a', 'bb'])}-{i % 2500:05d}.pdf",
            "object": f"{i:032x}", "length": 1, "size": rng.randint(1, 10_000), "mime": "application/pdf",
            "hash": "0", "header_hash": "0", "wrapped_key": "00", "key_id": "k", "created": 1000.0 + i,
            "tags": rng.sample(["x", "y", "z"], 2), "notes": "invoice" if i % 97 == 0 else "",
        })  # fmt: skip
    records += [{"t": "rm", "path": "d1/invoice-a-00001.pdf", "time": 1e9}]
    index.apply("journal/1", records)
    for query, filters in [
        ("invoice", Filters()),
        ("inv* OR report", Filters(tags=["x"])),
        ("invoice", Filters(larger_than=9000)),
        ("report", Filters(all_versions=True)),
        ("invoice", Filters(trash=True)),
    ]:
        full = search(index.db, query, filters, limit=None).hits
        for limit in (1, 50, 700):
            best = search(index.db, query, filters, limit=limit)
            assert [h.vid for h in best.hits] == [h.vid for h in full[:limit]], (query, limit)
            assert best.truncated == (len(full) > limit)
    index.close()


def test_input_search_cannot_use_is_a_usage_error(vault_cli: Cli) -> None:
    """Bytes that are not UTF-8 (a Latin-1 terminal's "café"), dates before the
    calendar's start and sizes past SQLite's integers: exit 2 or a plain answer,
    never an unexpected error."""
    for args in ([os.fsdecode(b"caf\xe9")], ["--tag", os.fsdecode(b"t\xff")], ["--larger-than", str(1 << 63)],
                 ["--smaller-than", "99999999999TiB"]):
        r = vault_cli("search", *args)
        assert_one_line_error(r, 2)
        r = vault_cli("search", *args, "--json")
        assert r.code == 2 and r.json()["exit_code"] == 2
    for args in (["--since", "0001-01-01"], ["--until", "9999-12-31"], ["--since", "99999999y"]):
        assert vault_cli("search", *args).code == 0, args
    assert vault_cli("audit", "--since", "0001-01-01").code == 0
