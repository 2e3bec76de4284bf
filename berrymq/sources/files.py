"""The ``fileobserver`` adapter plugin: :class:`FileObserver` sends a message when a file
matching a glob pattern is created, modified or removed."""

from __future__ import annotations

import glob as globbing
import importlib
import logging
import os
import stat
import threading
from typing import TYPE_CHECKING, Any

from berrymq.bursts import BurstLog
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.registries import SourceRegistry
from berrymq.sources import Adapter, identifier_for
from berrymq.sources._globbing import Unreadable, literal_root, matching

if TYPE_CHECKING:
    from berrymq.bus import Bus

__all__ = ["FileObserver"]

KIND = "fileobserver"
logger = logging.getLogger("berrymq")

# What identifies one version of a file: modification time, size and inode. A change of
# any of them is a modification (a file replaced by rename gets a new inode).
Signature = tuple[int, int, int]


def _snapshot(pattern: str) -> tuple[dict[str, Signature], list[Unreadable]]:
    """The regular files matching ``pattern`` with their signatures, and the paths that
    could not be read on the way (see :mod:`berrymq.sources._globbing`)."""
    found: dict[str, Signature] = {}
    paths, unreadable = matching(pattern)
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed between the listing and the stat: it is not there
        except OSError as exc:
            unreadable.append((path, exc))
            continue
        if stat.S_ISREG(st.st_mode):
            found[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return found, unreadable


def _kept(before: dict[str, Signature], unreadable: list[Unreadable]) -> dict[str, Signature]:
    """The files of ``before`` that lie in (or are) a path that could not be read: not
    seen now, and not known to be gone either."""
    places = [path.rstrip(os.sep) for path, _ in unreadable]
    if "" in places:  # the current directory itself
        return dict(before)
    return {path: signature for path, signature in before.items()
            if any(path == place or path.startswith(place + os.sep) for place in places)}


class _Wake:
    """A watchdog event handler (watchdog calls ``dispatch``) that makes the adapter's
    thread look at once."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def dispatch(self, event: object) -> None:
        self.wake.set()


def _drop_stop_race(record: logging.LogRecord) -> bool:
    return "called when the thread is inactive" not in record.getMessage()


def _quiet_watchdog_stop_race() -> None:
    """watchdog's inotify emitter logs an error when an event arrives while its observer
    stops (seen with watchdog 7): harmless here, since stop() ends the watching anyway,
    so that one message is filtered out of its logger."""
    watchdog_logger = logging.getLogger("watchdog.observers.inotify")
    if _drop_stop_race not in watchdog_logger.filters:
        watchdog_logger.addFilter(_drop_stop_race)


class FileObserver(Adapter):
    """Watches the files matching ``glob`` and sends ``id_name:created``,
    ``id_name:modified`` and ``id_name:removed`` with the file's path as ``args[0]``.

    ::

        with FileObserver("logs/*.log", "logfile", interval=1):
            ...   # receivers of "logfile:*" hear about every change

    The files present when the observer is created are its starting point (no
    ``created`` for them). Every ``interval`` seconds it lists the files (``glob``,
    ``**`` recursive) and compares modification time, size and inode with the previous
    round, so the outcome is deterministic: a file created and changed within one
    interval gives one ``created``; a file created and removed within one interval gives
    nothing. Only regular files are reported. Within one round messages go out sorted by
    path: created first, then modified, then removed.

    :param glob: the pattern of paths to watch, e.g. ``"/var/log/*.log"`` or ``"src/**/*.py"``.
    :param id_name: the name to send as.
    :param interval: seconds between rounds (default 5).
    :param watchdog: also watch the directory with the ``watchdog`` package, which makes
        the observer look at once when something changes there instead of at the next
        round (the polling still decides what changed, so the messages are the same).
        Needs ``pip install watchdog`` and an existing directory before the first wildcard.
    :param bus: the bus to send on; the default bus when omitted.
    :raises berrymq.PluginNotAvailable: when the ``fileobserver`` plugin is disabled.
    """

    kind = KIND

    def __init__(self, glob: str, id_name: str, interval: float = 5, *,
                 watchdog: bool = False, bus: Bus | None = None) -> None:
        if not isinstance(glob, str) or not glob:
            raise ValueError(f"FileObserver glob must be a non-empty str, got {glob!r}")
        self.created = identifier_for(id_name, "created", "FileObserver")
        self.modified = identifier_for(id_name, "modified", "FileObserver")
        self.removed = identifier_for(id_name, "removed", "FileObserver")
        super().__init__(interval, bus=bus)
        self.glob = glob
        # held while a check sends, so that two checks (a round, a call) send in order;
        # re-entrant, so that a receiver of those messages may call check() itself
        self._lock = threading.RLock()
        self._unreadable = BurstLog(logger)
        self._files = self._look({})
        root = literal_root(glob)
        self._observer: Any = None
        if watchdog:
            self._observer = self._watch(root)
        elif not os.path.isdir(root):
            logger.warning("FileObserver(%r): the directory %r does not exist (yet): files "
                           "made there later are reported as created", glob, root)
        try:
            self._start()
        except BaseException:  # the bus closed meanwhile: its thread and inotify go too
            self._stop_watching(5.0)
            raise

    def _watch(self, root: str) -> Any:
        # watchdog is optional and costly to import: loaded only when asked for.
        try:
            observers = importlib.import_module("watchdog.observers")
        except ImportError:
            raise ImportError("FileObserver(watchdog=True) needs the watchdog package: "
                              "pip install watchdog") from None
        if not os.path.isdir(root):
            raise FileNotFoundError(f"FileObserver(watchdog=True) watches {root!r}, the "
                                    f"directory of {self.glob!r}, which does not exist")
        _quiet_watchdog_stop_race()
        observer = observers.Observer()
        observer.daemon = True
        observer.schedule(_Wake(self._wake), root, recursive="**" in self.glob or globbing.has_magic(
            os.path.dirname(self.glob)))
        observer.start()
        return observer

    def check(self) -> list[tuple[str, str]]:
        """Look now (besides the thread's rounds) and send what changed; returns the
        ``(action, path)`` pairs sent. A :meth:`stop` meanwhile (from a receiver, or from
        another thread) ends the round before its next message: stopped means stopped, and
        the stop waits for one receiver at most, not for the rest of the round."""
        with self._lock:
            if self._stopped:
                return []
            before = self._files
            after = self._files = self._look(before)
            events = [("created", p) for p in sorted(after.keys() - before.keys())]
            events += [("modified", p) for p in sorted(after.keys() & before.keys())
                       if after[p] != before[p]]
            events += [("removed", p) for p in sorted(before.keys() - after.keys())]
            identifiers = {"created": self.created, "modified": self.modified,
                           "removed": self.removed}
            errors: list[Exception] = []
            for sent, (action, path) in enumerate(events):
                if self._stopped:
                    del events[sent:]
                    break
                try:
                    self.bus.twitter(identifiers[action], path)
                except Exception as exc:  # noqa: BLE001 - the other events still go out
                    errors.append(exc)
        if errors:
            try:
                raise ExceptionGroup(f"receivers of {self.created.name} failed", errors)
            finally:  # the group has them: this frame, in their tracebacks, lets go
                errors.clear()  # (else they and the frames kept each other, see raise_errors)
        return events

    def _look(self, before: dict[str, Signature]) -> dict[str, Signature]:
        """The files now; those of ``before`` in a place that cannot be read are kept as
        they were (not reported removed, nor created again once readable), and the place
        is logged (once per burst)."""
        after, unreadable = _snapshot(self.glob)
        if unreadable:
            after.update(_kept(before, unreadable))
            path, exc = unreadable[0]
            self._unreadable.warning(
                "FileObserver(%r) cannot read %s (%s%s): changes there are not reported "
                "until it can", self.glob, path or os.curdir, exc.strerror or exc,
                f", and {len(unreadable) - 1} more" if len(unreadable) > 1 else "")
        return after

    def poll(self) -> None:
        self.check()

    def stop(self, timeout: float | None = 5.0) -> None:
        super().stop(timeout)
        self._stop_watching(timeout)

    def _stop_watching(self, timeout: float | None) -> None:
        """Stop watchdog's observer (its thread, its inotify descriptor), if one runs."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout)

    def sends(self) -> list[Identifier]:
        return [self.created, self.modified, self.removed]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"FileObserver({self.glob!r}, {self.created.name!r}, {self.interval:g}) "
                f"{state}")


@hookimpl
def berrymq_register_sources(registry: SourceRegistry) -> None:
    registry.add(KIND, FileObserver, plugin=KIND)
