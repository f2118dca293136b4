"""Per-cell locks: two processes started on the same ``--out`` (a user launching a sweep twice, two workers of a
sweep) never run one cell at the same time.

A lock is an exclusive ``flock`` on ``<cell folder>/.lock``, held for the whole cell.  The kernel drops it when its
process ends, however it ends (``kill -9``, a crashed worker), so a dead owner never blocks a cell and there is no
stale-lock guessing.  The file records the owner's host name, pid and start time for the message a second process
prints ("held by host:pid").  Taking the lock re-checks that the locked file is still the one at the path (the
owner deletes it on release while holding the lock), so two processes can never both hold one cell.  On a
network file system the lock is as good as its ``flock`` support (NFS v4 and Lustre lock across machines; some
older set-ups only lock per machine).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".lock"


class CellLock:
    """``lock.acquire()`` is True when this process now holds the cell; ``owner`` then names the other holder."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self.fd: int | None = None
        self.owner: dict | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _read_owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.owner = self._read_owner()
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and deleted by its owner between our open and our lock: try the new file
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                     "started": time.time()}).encode())
            self.fd, self.owner = fd, None
            return True

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it: see acquire()
            os.close(self.fd)
            self.fd = None

    def owner_text(self) -> str:
        o = self.owner or {}
        return f"{o.get('host', '?')}:{o.get('pid', '?')}"

    def __enter__(self) -> "CellLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
