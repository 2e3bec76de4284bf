"""The paths matching a glob pattern, as :func:`glob.glob` (``recursive=True``) finds
them, with two differences that :class:`~berrymq.sources.files.FileObserver` needs:

- what cannot be read (a directory that cannot be listed, a file that cannot be
  stat'ed: permissions) is returned with its error, not skipped as if it were not there
  (``glob`` swallows such errors: the observer reported every file of a directory made
  unreadable as removed, and as created again when it became readable);
- ``**`` does not enter a directory that is one of those it is walking through (by
  device and inode), so symbolic links that lead back up (``link -> .``, ``up -> ..``)
  do not make it go round (with two such links ``glob`` did not return within minutes,
  and a file was found under 41 paths with one); a link to a directory elsewhere is
  followed, as by ``glob``, and what lies there is found under both paths.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator

__all__ = ["Unreadable", "literal_root", "matching"]

#: A path that could not be read, and why.
Unreadable = tuple[str, OSError]

#: What a path that is not there (any more) raises: nothing to report.
_ABSENT = (FileNotFoundError, NotADirectoryError)


def matching(pattern: str) -> tuple[list[str], list[Unreadable]]:
    """The paths matching ``pattern`` (files and directories, in no set order) and the
    paths that could not be read on the way. A pattern ending with a separator matches
    directories only (their paths end with it), as in ``glob``. A last part without
    wildcards is not looked up (``dir/**/name`` gives ``name`` in every directory): the
    caller stats each path, and drops those that are not there."""
    unreadable: list[Unreadable] = []
    base, parts, directories = _split(pattern)
    paths = list(_expand(base, parts, unreadable))
    if directories and parts:
        paths = [os.path.join(path, "") for path in paths if os.path.isdir(path)]
    return paths, unreadable


def literal_root(pattern: str) -> str:
    """The directory of ``pattern`` before its first wildcard (the pattern's own directory
    when it has none): where anything it matches lies, what watchdog watches."""
    base, parts, _ = _split(pattern)
    literal: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        literal.append(part)
    else:
        literal = literal[:-1]  # no wildcard at all: the file's directory
    return os.path.join(base, *literal) if base or literal else os.curdir


def _split(pattern: str) -> tuple[str, list[str], bool]:
    """``pattern`` as its start (a drive, a root, both or neither), its non-empty parts,
    and whether it ends with a separator (then it matches directories only)."""
    drive, rest = os.path.splitdrive(pattern)
    if os.altsep:
        rest = rest.replace(os.altsep, os.sep)
    base = drive + os.sep if rest.startswith(os.sep) else drive
    return base, [part for part in rest.split(os.sep) if part], rest.endswith(os.sep)


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
    does, but never into a directory the path already went through), with the names of
    the files in each that are not directories."""
    pending: list[tuple[str, frozenset[tuple[int, int]]]] = [(top, frozenset())]
    while pending:
        directory, above = pending.pop()
        try:
            st = os.stat(directory or os.curdir)
        except _ABSENT:
            continue
        except OSError as exc:
            unreadable.append((directory, exc))
            continue
        key = (st.st_dev, st.st_ino)
        if key in above:
            continue  # a link back up: the walk would go round
        above |= {key}
        files = []
        for name, entry in _listed(directory, unreadable):
            if name.startswith("."):
                continue
            try:
                is_directory = entry.is_dir()
            except OSError:  # a link that cannot be followed (a loop of links): as glob
                is_directory = False
            if is_directory:
                pending.append((os.path.join(directory, name), above))
            else:
                files.append(name)
        yield directory, files
