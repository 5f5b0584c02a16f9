"""How the sandbox keeps its world on disk: a snapshot plus an append-only journal.

Files, for a state file `sandbox.json`:

- `sandbox.json`: the snapshot. JSON lines: a header `{"format": 2, "generation": G, ...}`, then
  one line per object `["customer", {...}]`, then timers and idempotency records. (A format 1
  file, the whole world as one JSON document, still loads.)
- `sandbox.json.journal.N` for N >= G: one JSON line per commit (`SandboxState.commit`, before a
  request's response is sent), holding the objects the commit changed, removed ids, timer and
  idempotency operations and the clock. It is written with one `os.write` on an `O_APPEND`
  descriptor, so a kill -9 after the response keeps it (the kernel has it); `fsync=True` also
  survives power loss.

Loading reads the snapshot, then replays journals G, G+1, ... in order; a torn last line of a
journal (the process died inside its write, before the response) is ignored. Compaction writes
a new snapshot from the serialised objects the state keeps anyway (so taking it under the lock
copies references, not the world), switches to a new journal under the lock, and writes the
file outside it; the older journals are deleted once the new snapshot is in place.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SNAPSHOT_FORMAT = 2


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Journal:
    """The files of one state path: append commits, write snapshots, read them back."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.generation = 0  # of the journal being appended to
        self._fd: int | None = None
        self.size = 0  # bytes appended to the current journal

    def journal_path(self, generation: int) -> Path:
        return self.path.with_name(f"{self.path.name}.journal.{generation}")

    def journals(self) -> list[tuple[int, Path]]:
        pattern = re.compile(re.escape(self.path.name) + r"\.journal\.(\d+)$")
        found = []
        if self.path.parent.is_dir():
            for entry in self.path.parent.iterdir():
                match = pattern.match(entry.name)
                if match:
                    found.append((int(match.group(1)), entry))
        return sorted(found)

    # --- reading ------------------------------------------------------------------------
    def read_snapshot(self) -> tuple[dict[str, Any], list[Any]]:
        """The snapshot's header and its lines (a format 1 file: the whole document, no lines)."""
        if not self.path.exists():
            return {"format": SNAPSHOT_FORMAT, "generation": 0}, []
        text = self.path.read_text(encoding="utf-8")
        first, _, rest = text.partition("\n")
        header = json.loads(first) if first else {}
        if header.get("format", 1) < SNAPSHOT_FORMAT:
            return {"format": 1, "generation": 0, "document": json.loads(text)}, []
        return header, [json.loads(line) for line in rest.splitlines() if line]

    def read_commits(self, since: int) -> Iterator[dict[str, Any]]:
        """Every commit in journals >= `since`, in order (a torn last line is skipped)."""
        for generation, path in self.journals():
            if generation < since:
                continue
            lines = path.read_bytes().split(b"\n")
            for number, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    if any(rest.strip() for rest in lines[number + 1 :]):
                        raise ValueError(f"{path}: line {number + 1} is damaged") from None
                    # The last line, torn by a crash inside its write: never acknowledged.
            self.generation = max(self.generation, generation)

    # --- writing ------------------------------------------------------------------------
    def open_next(self) -> None:
        """Start appending to a fresh journal (the one after any found)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.write_snapshot(0, {}, [])  # so the state file exists from the first change
        last = self.journals()
        self.generation = max(self.generation, last[-1][0] if last else 0) + 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fd = os.open(self.journal_path(self.generation), flags, 0o644)
        self.size = 0

    def append(self, line: str) -> None:
        if self._fd is None:
            self.open_next()
        assert self._fd is not None
        data = (line + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)
        self.size += len(data)

    def write_snapshot(self, generation: int, header: dict[str, Any], lines: list[str]) -> int:
        """Write a snapshot covering every journal before `generation`; delete those."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        head = dumps({**header, "format": SNAPSHOT_FORMAT, "generation": generation})
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(head + "\n")
            for line in lines:
                out.write(line)
                out.write("\n")
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, self.path)
        for old, path in self.journals():
            if old < generation:
                path.unlink(missing_ok=True)
        return size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
