"""The usage journal: round trips, segments, torn tails, corruption, ack, locking, and
a writer killed with SIGKILL mid-append."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import journal

REPO = Path(__file__).resolve().parents[1]


def replay_all(j: journal.Journal) -> tuple[list[tuple[int, int, bytes]], journal.ReplayStats]:
    out = list(j.replay())
    assert j.last_replay is not None
    return out, j.last_replay


def payloads(records: list[tuple[int, int, bytes]]) -> list[bytes]:
    return [p for _, _, p in records]


def write_segment(directory: Path, seg_id: int, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / journal.segment_name(seg_id)).write_bytes(data)


def test_round_trip_many_records_across_several_segments(tmp_path: Path) -> None:
    sent = [bytes([i % 251]) * (i % 97) + str(i).encode() for i in range(300)]
    with journal.Journal(tmp_path, segment_bytes=2048) as j:
        assert not j.pending()
        for p in sent:
            j.append(p)
        assert j.pending()
        records, stats = replay_all(j)
    assert payloads(records) == sent
    seg_ids = [s for s, _, _ in records]
    assert seg_ids == sorted(seg_ids)
    assert len(set(seg_ids)) >= 5
    # record_index counts from 0 within each segment
    for seg in set(seg_ids):
        assert [i for s, i, _ in records if s == seg] == list(range(seg_ids.count(seg)))
    assert (stats.records, stats.torn, stats.corrupt) == (300, 0, 0)
    for seg in set(seg_ids):
        size = (tmp_path / journal.segment_name(seg)).stat().st_size
        assert size <= 2048


def test_record_larger_than_segment_size_gets_its_own_segment(tmp_path: Path) -> None:
    with journal.Journal(tmp_path, segment_bytes=100) as j:
        j.append(b"a")
        j.append(b"b" * 500)
        j.append(b"c")
        records, _ = replay_all(j)
    assert payloads(records) == [b"a", b"b" * 500, b"c"]
    assert len({s for s, _, _ in records}) == 3


def test_empty_payload_round_trips(tmp_path: Path) -> None:
    with journal.Journal(tmp_path) as j:
        j.append(b"")
        j.append(b"x")
        assert payloads(replay_all(j)[0]) == [b"", b"x"]


def test_reopen_after_close_keeps_records_and_appends_to_a_new_segment(tmp_path: Path) -> None:
    with journal.Journal(tmp_path) as j:
        j.append(b"one")
        j.append(b"two")
    with journal.Journal(tmp_path) as j:
        assert j.pending()
        j.append(b"three")
        records, stats = replay_all(j)
    assert payloads(records) == [b"one", b"two", b"three"]
    assert records[0][0] < records[2][0]
    assert stats.torn == stats.corrupt == 0


def test_opening_creates_missing_directory_and_nothing_is_pending(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    with journal.Journal(d) as j:
        assert d.is_dir()
        assert not j.pending()
        assert list(j.replay()) == []
    assert not any(d.glob("journal-*.log"))


def _template(tmp_path: Path) -> tuple[bytes, int, list[bytes]]:
    sent = [b"first record", b"second" * 5, b'{"request_id": "r-3", "tokens": 1234}']
    data = b"".join(journal.encode_record(p) for p in sent)
    last_start = len(data) - len(journal.encode_record(sent[-1]))
    return data, last_start, sent


def test_torn_tail_at_every_byte_offset_of_the_last_record(tmp_path: Path) -> None:
    data, last_start, sent = _template(tmp_path)
    for cut in range(last_start + 1, len(data)):
        d = tmp_path / f"cut{cut}"
        write_segment(d, 1, data[:cut])
        with journal.Journal(d) as j:
            records, stats = replay_all(j)
            assert payloads(records) == sent[:2], cut
            assert (stats.torn, stats.corrupt, stats.skipped_bytes) == (1, 0, cut - last_start)
            j.append(b"after the crash")
        with journal.Journal(d) as j:
            records, stats = replay_all(j)
            assert payloads(records) == [*sent[:2], b"after the crash"], cut
            assert stats.torn == 1


def test_cut_exactly_at_a_record_boundary_is_not_damage(tmp_path: Path) -> None:
    data, last_start, sent = _template(tmp_path)
    write_segment(tmp_path, 1, data[:last_start])
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert payloads(records) == sent[:2]
    assert stats.torn == stats.corrupt == 0


def test_bad_crc_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    data, _, sent = _template(tmp_path)
    broken = bytearray(data)
    broken[-1] ^= 0xFF
    write_segment(tmp_path, 1, bytes(broken))
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert payloads(records) == sent[:2]
    assert (stats.torn, stats.corrupt) == (1, 0)


def _five(tmp_path: Path) -> tuple[bytearray, list[int], list[bytes]]:
    sent = [f"record {i} ".encode() * (i + 1) for i in range(5)]
    data = bytearray()
    starts = []
    for p in sent:
        starts.append(len(data))
        data += journal.encode_record(p)
    return data, starts, sent


@pytest.mark.parametrize("where", ["payload", "magic", "length", "crc"])
def test_corrupted_middle_record_is_skipped_and_later_records_replayed(tmp_path: Path, where: str) -> None:
    data, starts, sent = _five(tmp_path)
    offset = {"magic": 0, "length": 4, "crc": 8, "payload": 20}[where]
    data[starts[2] + offset] ^= 0x5A
    write_segment(tmp_path, 1, bytes(data))
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert payloads(records) == [sent[0], sent[1], sent[3], sent[4]]
    assert [i for _, i, _ in records] == [0, 1, 2, 3]
    assert (stats.corrupt, stats.torn) == (1, 0)
    assert stats.skipped_bytes == starts[3] - starts[2]


def test_garbage_containing_the_magic_between_records_is_skipped(tmp_path: Path) -> None:
    a, b = journal.encode_record(b"alpha"), journal.encode_record(b"beta")
    # a fake header whose length runs past the end, then a header with a wrong CRC
    junk = journal.MAGIC + struct.pack("<II", 10**6, 0) + b"zz" + journal.MAGIC
    junk += struct.pack("<II", 3, 12345) + b"abc"
    write_segment(tmp_path, 1, a + junk + b)
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert payloads(records) == [b"alpha", b"beta"]
    assert stats.corrupt == 1
    assert stats.skipped_bytes == len(junk)


def test_damage_in_an_older_segment_does_not_stop_newer_ones(tmp_path: Path) -> None:
    write_segment(tmp_path, 1, journal.encode_record(b"a") + b"\xf5CC")  # torn tail
    write_segment(tmp_path, 2, journal.encode_record(b"b"))
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert [(s, p) for s, _, p in records] == [(1, b"a"), (2, b"b")]
    assert stats.torn == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sent=st.lists(st.binary(max_size=60), min_size=1, max_size=12),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=4),
    cut=st.integers(min_value=0),
)
def test_damaged_segments_never_yield_garbage(
    tmp_path_factory: pytest.TempPathFactory,
    sent: list[bytes],
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    data = bytearray(b"".join(journal.encode_record(p) for p in sent))
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    del data[len(data) - cut % (len(data) + 1) :]
    d = tmp_path_factory.mktemp("fuzz")
    write_segment(d, 1, bytes(data))
    with journal.Journal(d) as j:
        got = payloads(replay_all(j)[0])
    # every yielded payload is one that was appended, in the original order
    it = iter(sent)
    assert all(any(p == q for q in it) for p in got)
    if not flips and cut == 0:
        assert got == sent


def test_ack_deletes_the_segment_and_is_idempotent(tmp_path: Path) -> None:
    with journal.Journal(tmp_path, segment_bytes=64) as j:
        for i in range(6):
            j.append(b"payload %d" % i + b"." * 20)
        seg_ids = j.segments()
        assert len(seg_ids) >= 3
        for seg in sorted({s for s, _, _ in j.replay()}):
            j.ack(seg)
            assert not (tmp_path / journal.segment_name(seg)).exists()
            j.ack(seg)
        assert not j.pending()
        assert list(j.replay()) == []
    with journal.Journal(tmp_path) as j:
        assert not j.pending()


def test_append_during_replay_goes_to_a_newer_segment_and_survives_ack(tmp_path: Path) -> None:
    with journal.Journal(tmp_path) as j:
        j.append(b"old")
        replay = j.replay()
        seg, _, p = next(replay)
        assert p == b"old"
        j.append(b"new while replaying")
        assert list(replay) == []  # this pass reads only the sealed segments
        j.ack(seg)
        assert j.pending()
        assert payloads(replay_all(j)[0]) == [b"new while replaying"]


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    j.close()
    with pytest.raises(journal.JournalError, match="closed"):
        j.append(b"x")


def test_second_open_of_the_same_directory_is_rejected(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    with pytest.raises(journal.JournalLockedError, match=str(tmp_path)):
        journal.Journal(tmp_path)
    j.close()
    journal.Journal(tmp_path).close()  # released on close


def test_another_process_holding_the_lock_is_reported(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(journal.JournalLockedError, match=f"pid {holder.pid}"):
            journal.Journal(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    journal.Journal(tmp_path).close()  # the kernel drops the lock of a dead process


_HOLD_LOCK = """
import sys
from gateway import journal
j = journal.Journal(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""

_APPEND_FOREVER = textwrap.dedent(
    """
    import hashlib, struct, sys
    from gateway import journal
    j = journal.Journal(sys.argv[1], segment_bytes=256 * 1024)
    i = 0
    while True:
        body = hashlib.sha256(str(i).encode()).digest() * (1 + (i * 37) % 1500)
        j.append(struct.pack("<Q", i) + body)
        if i == 0:
            print("appending", flush=True)
        i += 1
    """
)


def test_kill_9_mid_append_leaves_only_whole_valid_records(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _APPEND_FOREVER, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"appending\n"
        time.sleep(0.4)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    with journal.Journal(tmp_path) as j:
        records, stats = replay_all(j)
    assert len(records) > 1
    assert len({s for s, _, _ in records}) > 1  # the run crossed segment boundaries
    for n, p in enumerate(payloads(records)):
        (i,) = struct.unpack_from("<Q", p)
        assert i == n  # nothing lost before the kill, nothing out of order
        body = hashlib.sha256(str(i).encode()).digest() * (1 + (i * 37) % 1500)
        assert p[8:] == body
    assert stats.corrupt == 0
    assert stats.torn <= 1
