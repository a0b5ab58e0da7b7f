"""Loopback ports and polling, for tests that start servers and threads."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from .timing import scaled


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (servers in tests listen on loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass — stretched by how loaded the
    machine is (:func:`tests.support.timing.scaled`) — ; its last answer decides."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
