"""Fault injection for the reliability tests: ``PARADIS_FAULT_INJECTION`` holds a JSON object such as
``{"exit_at_epoch": 2, "marker": "/tmp/x", "rank": 1}``. After reporting that epoch, the process (of that
Ray Train rank, if given) exits at once with ``os._exit`` - the first time only: the marker file
records that the fault happened. Unset (always, outside tests), nothing happens."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "PARADIS_FAULT_INJECTION"


def maybe_inject(epoch: int, rank: int = 0) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    fault = json.loads(spec)
    if fault.get("exit_at_epoch") != epoch or fault.get("rank", 0) != rank:
        return
    marker = Path(fault["marker"])
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # first attempt only
    except FileExistsError:
        return
    os.write(fd, f"killed at epoch {epoch}, rank {rank}, pid {os.getpid()}\n".encode())
    os.close(fd)
    os._exit(17)
