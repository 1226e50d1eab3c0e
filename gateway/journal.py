"""A local append-only, checksummed journal for usage batches that could not reach
PostgreSQL (database away, or the in-memory queue full), replayed when it returns.

On disk: a directory of segment files `journal-<seq>.log`, each a run of records

    magic (4 bytes) | length (u32 LE) | CRC32 of payload (u32 LE) | payload

plus `journal.lock`, held with an exclusive `fcntl.flock` for as long as a `Journal`
is open, so exactly one process writes a directory.

The caller's contract — how "no usage event is ever lost or written twice" (SPEC §5)
holds across crashes:

1. `append()` returns only after the record is on disk (write + `os.fsync`), so a batch
   is dropped from memory only once it is durable.
2. `replay()` yields every intact record, oldest segment first. The caller inserts each
   payload *idempotently* — the usage table's request id is unique and the writer uses
   `INSERT … ON CONFLICT DO NOTHING` — and calls `ack(segment_id)` only after every
   record of that segment is committed. A crash between the insert and the ack replays
   the segment again on the next start; the second insert does nothing. At-least-once
   replay plus idempotent insert gives exactly-once rows.
3. A record torn by a crash mid-write (short header, short payload or bad CRC with no
   intact record after it) and corruption inside a segment (bad magic or CRC followed
   by intact records, found again by scanning for the magic) are counted in
   `ReplayStats`, logged, and skipped: replay never yields bytes whose CRC did not check.

`append()` is a blocking write plus fsync (≈ 1–10 ms on an SSD for a ≤ 1 MiB batch). It
is cheap enough for the event loop while the journal is idle, but when the database is
down under load the caller should run it in an executor (`loop.run_in_executor`); the
journal's own lock makes appends from a worker thread safe alongside `replay()`/`ack()`.

Each `Journal` writes into a fresh segment (created on its first append) rather than
continuing the last one, so a torn tail left by a crash is never followed by new records
in the same file, and `replay()` seals the segment being written, so `ack()` can never
delete a segment that is still receiving appends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import re
import struct
import threading
import zlib
from collections.abc import Generator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

# 0xF5 never occurs in UTF-8, so a JSON payload can never contain the magic; in other
# payloads a false match is still rejected by the length and CRC checks.
MAGIC = b"\xf5CCJ"
_HEADER = struct.Struct("<4sII")
HEADER_SIZE = _HEADER.size  # 12
MAX_PAYLOAD = 0xFFFF_FFFF
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

LOCK_NAME = "journal.lock"
_SEGMENT_RE = re.compile(r"journal-(\d+)\.log")


class JournalError(Exception):
    """The journal cannot be used as asked."""


class JournalLockedError(JournalError):
    """Another process (or another open `Journal`) holds the directory's lock."""


@dataclasses.dataclass(slots=True)
class ReplayStats:
    """What one `replay()` pass found; also the generator's return value."""

    segments: int = 0
    records: int = 0
    torn: int = 0  # damaged tails of segments (crash mid-append); nothing intact after
    corrupt: int = 0  # damaged regions followed by intact records
    skipped_bytes: int = 0


def segment_name(segment_id: int) -> str:
    return f"journal-{segment_id:010d}.log"


def encode_record(payload: bytes) -> bytes:
    """One record as it goes on disk (exposed for tests and tools)."""
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class Journal:
    """An open journal directory; one per process and directory (see module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        if segment_bytes <= HEADER_SIZE:
            raise ValueError(f"segment_bytes must be larger than {HEADER_SIZE}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.last_replay: ReplayStats | None = None
        self._mutex = threading.Lock()
        self._fd: int | None = None  # the segment being written, if any
        self._fd_id = 0
        self._fd_size = 0

        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            self._segments = self._scan_segments()
            self._next_id = (self._segments[-1] + 1) if self._segments else 1
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- lifecycle ------------------------------------------------------------------

    def _take_lock(self) -> int:
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalLockedError(
                    f"journal directory {self.directory} is in use by another writer "
                    f"(lock {path} held, pid {holder}); one process per directory"
                ) from None
            raise
        # The pid is only for the message above; the flock is what excludes.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def close(self) -> None:
        """Close the segment being written and release the directory lock."""
        with self._mutex:
            self._seal()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing the last descriptor drops the flock
                self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._lock_fd < 0:
            raise JournalError(f"journal {self.directory} is closed")

    def _scan_segments(self) -> list[int]:
        ids = []
        for entry in os.scandir(self.directory):
            m = _SEGMENT_RE.fullmatch(entry.name)
            if m:
                ids.append(int(m.group(1)))
        return sorted(ids)

    def _fsync_dir(self) -> None:
        # A new or removed directory entry is durable only once the directory is synced.
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- writing --------------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Write one record durably; returns once it is fsynced. Blocking (see module)."""
        size = len(payload)
        if size > MAX_PAYLOAD:
            raise ValueError(f"journal payload of {size} bytes exceeds {MAX_PAYLOAD}")
        header = _HEADER.pack(MAGIC, size, zlib.crc32(payload))
        with self._mutex:
            self._check_open()
            if self._fd is not None and self._fd_size + HEADER_SIZE + size > self.segment_bytes:
                self._seal()
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            try:
                self._write_all(self._fd, header, payload)
                os.fsync(self._fd)
            except BaseException:
                # Cut a half-written record off so later appends do not follow garbage;
                # if even that fails, replay's resync will skip it.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._fd_size)
                raise
            self._fd_size += HEADER_SIZE + size

    @staticmethod
    def _write_all(fd: int, header: bytes, payload: bytes) -> None:
        # writev avoids copying a large payload just to prepend 12 bytes; a regular file
        # may still take a short write (e.g. near a full disk), so finish it in a loop.
        total = HEADER_SIZE + len(payload)
        written = os.writev(fd, [header, payload])
        if written < total:
            rest = memoryview(header + payload)[written:]
            while rest:
                n = os.write(fd, rest)
                if n == 0:
                    raise OSError(errno.EIO, "journal write made no progress")
                rest = rest[n:]

    def _open_segment(self) -> None:
        seg_id = self._next_id
        path = self.directory / segment_name(seg_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._fd_id = seg_id
        self._fd_size = 0
        self._next_id = seg_id + 1
        self._segments.append(seg_id)
        self._fsync_dir()

    def _seal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- reading --------------------------------------------------------------------

    def pending(self) -> bool:
        """True if any segment is on disk (not yet acked). No I/O."""
        return bool(self._segments)

    def segments(self) -> list[int]:
        """Ids of the segments on disk, oldest first."""
        with self._mutex:
            return list(self._segments)

    def replay(self) -> Generator[tuple[int, int, bytes], None, ReplayStats]:
        """Yield `(segment_id, record_index, payload)` for every intact record, oldest
        segment first; `record_index` counts intact records within the segment.

        Seals the segment being written when iteration starts, so appends made during
        the replay land in a newer segment that this pass does not read (and `ack()` of
        a replayed segment cannot lose them). Damage is counted in the returned
        `ReplayStats` (also kept as `self.last_replay`) and logged.
        """
        with self._mutex:
            self._check_open()
            self._seal()
            ids = list(self._segments)
        stats = ReplayStats()
        self.last_replay = stats
        for seg_id in ids:
            path = self.directory / segment_name(seg_id)
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # acked while this pass was running
                continue
            stats.segments += 1
            for index, payload in enumerate(_parse_segment(data, seg_id, stats)):
                stats.records += 1
                yield seg_id, index, payload
        if stats.torn or stats.corrupt:
            log.warning(
                "journal_damage_skipped",
                directory=str(self.directory),
                torn=stats.torn,
                corrupt=stats.corrupt,
                skipped_bytes=stats.skipped_bytes,
                records=stats.records,
            )
        return stats

    def ack(self, segment_id: int) -> None:
        """Delete a segment whose every record the caller has committed; idempotent."""
        with self._mutex:
            self._check_open()
            if self._fd is not None and self._fd_id == segment_id:
                self._seal()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / segment_name(segment_id))
            if segment_id in self._segments:
                self._segments.remove(segment_id)
            self._fsync_dir()


# --- parsing ------------------------------------------------------------------------


def _record_at(data: bytes, pos: int) -> int:
    """End offset of an intact record starting at `pos`, or -1."""
    if len(data) - pos < HEADER_SIZE:
        return -1
    magic, length, crc = _HEADER.unpack_from(data, pos)
    if magic != MAGIC:
        return -1
    start = pos + HEADER_SIZE
    end = start + length
    if end > len(data):
        return -1
    if zlib.crc32(memoryview(data)[start:end]) != crc:
        return -1
    return end


def _resync(data: bytes, pos: int) -> int:
    """Offset of the next intact record at or after `pos`, or -1."""
    while True:
        pos = data.find(MAGIC, pos)
        if pos < 0 or _record_at(data, pos) >= 0:
            return pos
        pos += 1


def _parse_segment(data: bytes, seg_id: int, stats: ReplayStats) -> Generator[bytes, None, None]:
    pos = 0
    size = len(data)
    while pos < size:
        end = _record_at(data, pos)
        if end >= 0:
            yield data[pos + HEADER_SIZE : end]
            pos = end
            continue
        nxt = _resync(data, pos + 1)
        if nxt < 0:
            # Nothing intact follows: the tail of a crashed append.
            stats.torn += 1
            stats.skipped_bytes += size - pos
            log.warning("journal_torn_tail", segment=seg_id, offset=pos, bytes=size - pos)
            return
        stats.corrupt += 1
        stats.skipped_bytes += nxt - pos
        log.warning("journal_corrupt_region", segment=seg_id, offset=pos, bytes=nxt - pos)
        pos = nxt
