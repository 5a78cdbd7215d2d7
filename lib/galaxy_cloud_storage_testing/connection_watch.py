"""Catching the plugin in a network call while its thread holds one of Galaxy's database connections.

A request that keeps its transaction open while it waits for a cloud or an identity provider holds
a pooled connection for as long as the cloud takes: under load that empties Galaxy's pool
(PostgreSQL: "QueuePool limit of size 5 overflow 10 reached", a 500) and, on SQLite, keeps a lock
that other requests' writes wait on ("database is locked").

``HeldConnectionWatch`` follows which thread has a connection checked out of the engine's pool
(SQLAlchemy's pool events, which NullPool fires too) and, with a Python audit hook on
``socket.connect``, notes every new connection opened by plugin code while its thread holds one.
Audit hooks cannot be removed: the one hook installed here does nothing unless a watch is active.
"""

import sys
import threading
import traceback
from typing import Optional

from sqlalchemy import event
from sqlalchemy.engine import Engine

PLUGIN_CODE = "/galaxy_cloud_storage/"  # frames of the plugin's own modules (not of its testing helpers)

_active: Optional["HeldConnectionWatch"] = None
_hook_installed = False


def _on_audit(event_name: str, args: tuple) -> None:
    watch = _active
    if watch is not None and event_name == "socket.connect":
        watch.connecting(args[1])


class HeldConnectionWatch:
    """``with HeldConnectionWatch(engine) as watch: ...``; then ``watch.violations`` lists, for
    each offending connect, the address and the plugin's frames that made it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.holders: dict[int, int] = {}  # thread ident -> connections it has checked out
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.plugin_connects = 0  # plugin connects seen at all: a watch that saw none proves nothing

    def __enter__(self) -> "HeldConnectionWatch":
        global _active, _hook_installed
        event.listen(self.engine, "checkout", self._checked_out)
        event.listen(self.engine, "checkin", self._checked_in)
        if not _hook_installed:
            sys.addaudithook(_on_audit)
            _hook_installed = True
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        event.remove(self.engine, "checkout", self._checked_out)
        event.remove(self.engine, "checkin", self._checked_in)

    def _checked_out(self, dbapi_connection, record, proxy) -> None:
        with self.lock:
            ident = threading.get_ident()
            self.holders[ident] = self.holders.get(ident, 0) + 1

    def _checked_in(self, dbapi_connection, record) -> None:
        # Checked in from the thread that returns it, which is the one that checked it out here
        # (Galaxy's scoped sessions are per thread).
        with self.lock:
            ident = threading.get_ident()
            if self.holders.get(ident, 0) > 0:
                self.holders[ident] -= 1

    def connecting(self, address) -> None:
        frames = [
            f"{frame.filename.split(PLUGIN_CODE, 1)[1]}:{frame.lineno} {frame.name}"
            for frame in traceback.extract_stack()
            if PLUGIN_CODE in frame.filename
        ]
        if not frames:
            return
        with self.lock:
            self.plugin_connects += 1
            if self.holders.get(threading.get_ident(), 0) > 0:
                self.violations.append(f"connect to {address} from {' > '.join(frames)}")
