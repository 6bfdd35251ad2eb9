"""What sizes the store learns from packs: cut at the container magic, a pack
gives each member's Padmé size class, never the file's exact size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Cli, data_objects, write
from livedata_cli.packs import padded

pytestmark = pytest.mark.inprocess

OVERHEAD = 102 + 16  # header and one tag: a small file is one segment


def _stretches(blob: bytes) -> list[int]:
    """What a store sees: the lengths between one container magic and the next (or the end)."""
    starts = [i for i in range(len(blob)) if blob.startswith(b"LDV\x01", i)]
    return [b - a for a, b in zip(starts, [*starts[1:], len(blob)], strict=True)]


def test_a_pack_shows_size_classes_not_sizes(vault_cli: Cli, store_dir: Path) -> None:
    # Sizes in one Padmé class (1000..1023 plaintext bytes all pad alike), and some more.
    sizes = [1000, 1001, 1013, 1022, 5000, 5003, 70_000, 70_111]
    for i, n in enumerate(sizes):
        write(vault_cli.cwd / "src" / f"f{i}.bin", os.urandom(n))
    vault_cli.ok("upload", "src", "-r", "--as", "s/")
    (pack,) = data_objects(store_dir)
    seen = sorted(_stretches(pack.read_bytes()))
    assert len(seen) == len(sizes)
    assert seen == sorted(padded(n + OVERHEAD) for n in sizes)
    assert not {n + OVERHEAD for n in sizes} & set(seen), "no exact container size shows"
    assert len(set(seen[:4])) == 1, "four different sizes look alike"
    assert sum(seen) <= 1.12 * sum(n + OVERHEAD for n in sizes)
    for i, n in enumerate(sizes):
        assert len(vault_cli.ok("download", f"s/f{i}.bin", "-o", "-").stdout) == n


@given(st.integers(min_value=0, max_value=1 << 40))
def test_padme_rounds_up_by_at_most_12_percent_and_keeps_few_bits(n: int) -> None:
    p = padded(n)
    assert n <= p <= max(n, int(n * 1.12) + 1)
    if n >= 2:
        e = n.bit_length() - 1
        low = e - e.bit_length()
        assert p % (1 << low) == 0  # the low bits of the size class are all zero
    assert padded(p) == p
