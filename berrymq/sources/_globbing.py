"""The paths matching a glob pattern, as :func:`glob.glob` (``recursive=True``) finds
them, with two differences that :class:`~berrymq.sources.files.FileObserver` needs:

- what cannot be read (a directory that cannot be listed, a file that cannot be
  stat'ed: permissions) is returned with its error, not skipped as if it were not there
  (``glob`` swallows such errors: the observer reported every file of a directory made
  unreadable as removed, and as created again when it became readable);
- ``**`` walks each directory once, by its device and inode, so symbolic links that
  lead back up (``link -> .``) do not make it go round (with two such links ``glob``
  did not return within minutes, and a file was found under 41 paths with one).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator

__all__ = ["Unreadable", "matching"]

#: A path that could not be read, and why.
Unreadable = tuple[str, OSError]

#: What a path that is not there (any more) raises: nothing to report.
_ABSENT = (FileNotFoundError, NotADirectoryError)


def matching(pattern: str) -> tuple[list[str], list[Unreadable]]:
    """The paths matching ``pattern`` (files and directories, in no set order) and the
    paths that could not be read on the way."""
    unreadable: list[Unreadable] = []
    base = os.sep if os.path.isabs(pattern) else ""
    parts = [part for part in pattern.split(os.sep) if part]
    return list(_expand(base, parts, unreadable)), unreadable


def _expand(base: str, parts: list[str], unreadable: list[Unreadable]) -> Iterator[str]:
    if not parts:
        yield base
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        for directory, names in _walk(base, unreadable):
            if rest:
                yield from _expand(directory, rest, unreadable)
            else:  # "**" last: everything beneath, as glob gives it
                yield directory
                yield from (os.path.join(directory, name) for name in names)
    elif glob.has_magic(part):
        hidden = part.startswith(".")  # as glob: a wildcard does not match a leading dot
        for name, _ in _listed(base, unreadable):
            if (hidden or not name.startswith(".")) and fnmatch.fnmatchcase(name, part):
                yield from _expand(os.path.join(base, name), rest, unreadable)
    else:
        yield from _expand(os.path.join(base, part), rest, unreadable)


def _listed(directory: str, unreadable: list[Unreadable]) -> list[tuple[str, os.DirEntry[str]]]:
    """The entries of ``directory`` (``""``: the current one); none, and its error kept,
    when it cannot be listed."""
    try:
        with os.scandir(directory or os.curdir) as entries:
            return [(entry.name, entry) for entry in entries]
    except _ABSENT:
        return []
    except OSError as exc:
        unreadable.append((directory, exc))
        return []


def _walk(top: str, unreadable: list[Unreadable]) -> Iterator[tuple[str, list[str]]]:
    """``top`` and every directory beneath it but hidden ones (links followed, as glob
    does), each once, with the names of the files in it that are not directories."""
    seen: set[tuple[int, int]] = set()
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            st = os.stat(directory or os.curdir)
        except _ABSENT:
            continue
        except OSError as exc:
            unreadable.append((directory, exc))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue  # reached again through a link
        seen.add((st.st_dev, st.st_ino))
        files = []
        for name, entry in _listed(directory, unreadable):
            if name.startswith("."):
                continue
            if entry.is_dir():
                pending.append(os.path.join(directory, name))
            else:
                files.append(name)
        yield directory, files
