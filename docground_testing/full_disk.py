"""Filling a small disk, for the full-disk tests and the child process one of them starts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from docground.disk_space import free_bytes

PAGE = 4096  # a tmpfs allocates whole pages: less than one free is a full disk
ATTEMPTS = 20


def fill(disk: Path, leave: int = 0) -> Path:
    """One file that takes the disk's free space but `leave` bytes (less than a page more). The free space can
    shrink between measuring and allocating it (a store's own writes go on meanwhile), and the allocation then
    fails with ENOSPC: it is tried again with what is free then."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(ATTEMPTS):
            room = free_bytes(disk) - leave
            if room < PAGE:
                return filler
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, room)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    raise RuntimeError(f"{disk} still has {free_bytes(disk) - leave} bytes over {leave} free after {ATTEMPTS} tries")
