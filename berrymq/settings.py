"""Finding, parsing and checking the settings file.

The first found of: the file named by ``BERRYMQ_CONFIG``; ``berrymq.toml`` in the working
directory (table ``[berrymq]``), unless it sets nothing at all; ``pyproject.toml`` in the
working directory, if it has a ``[tool.berrymq]`` table. Without one, every installed
plugin is active.

Every problem is a :class:`~berrymq.errors.SettingsError` naming the file and, where it
can be found, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berrymq._pyproject import holds_our_table
from berrymq.errors import PluginError, SettingsError

__all__ = ["CORE_KEYS", "ENV_VAR", "MAX_HOP_LIMIT", "MAX_MULTIPLICITY", "Settings", "core_problem",
           "find_settings", "load_settings"]

ENV_VAR = "BERRYMQ_CONFIG"

#: The keys of the ``[berrymq]`` table itself; every other key must be a plugin's table.
CORE_KEYS: dict[str, type | tuple[type, ...]] = {
    "plugins": list,
    "disable": list,
    "raise_errors": bool,
    "hop_limit": int,
    "multiplicity": int,
    "pool_queue_size": int,
    "pool_queue_wait": (int, float),
    "async_pending_limit": int,
    "async_pending_wait": (int, float),
    "route_cache_size": int,
}


#: The least value of each numeric core setting.
_CORE_LEAST = {"hop_limit": 1, "multiplicity": 0, "pool_queue_size": 1, "pool_queue_wait": 0,
               "async_pending_limit": 1, "async_pending_wait": 0, "route_cache_size": 1}

#: the most worker threads a pool may have (``multiplicity``): far more than receivers
#: can use under the GIL, and few enough that a mistyped value (``100000000``) is refused
#: at once instead of taking the process's memory and threads until the system says no
MAX_MULTIPLICITY = 10_000
#: the greatest ``hop_limit``: each hand-on within a process nests the receivers' calls
#: (about four frames), so a loop of receivers stopped by a larger limit ended instead in
#: a RecursionError (at about 250 hops), neither counted nor logged as a loop
MAX_HOP_LIMIT = 100
#: The greatest value of a core setting that has one, and its unit.
_CORE_MOST = {"multiplicity": (MAX_MULTIPLICITY, " worker threads"),
              "hop_limit": (MAX_HOP_LIMIT, " (each hop within a process nests a call: more "
                                           "would pass Python's recursion limit)")}


def core_problem(key: str, value: object) -> TypeError | ValueError | None:
    """What is wrong with ``value`` for the core setting ``key``, or None: one check for
    the settings file (which raises it as a :class:`SettingsError` with the line) and for
    the same arguments given to ``Bus(...)`` (raised as it is). The message names ``key``.
    """
    expected = CORE_KEYS[key]
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        return TypeError(f"{key} must be {_type_name(expected)}, got {type(value).__name__}")
    least = _CORE_LEAST.get(key)
    if least is not None and not value >= least:  # type: ignore[operator]  # NaN too
        more = "at least 1" if least else "0 or more"
        return ValueError(f"{key} must be {more}, got {value!r}")
    most = _CORE_MOST.get(key)
    if most is not None and isinstance(value, int) and value > most[0]:
        return ValueError(f"{key} must be at most {most[0]}{most[1]}, got {value!r}")
    return None


@dataclass(frozen=True)
class Settings:
    """The parsed settings; an empty one (no file) activates every installed plugin."""

    path: Path | None = None
    table_name: str = "berrymq"
    plugins: tuple[str, ...] | None = None
    disable: tuple[str, ...] = ()
    core: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    text: str = ""

    def file_path(self, value: str) -> str:
        """A path given in the file, as a plugin uses it: ``~`` expanded, and a relative
        one taken relative to the file's folder (to the working directory without a file)."""
        path = os.path.expanduser(value)
        return path if self.path is None else os.path.join(self.path.parent, path)

    def line_of(self, key: str | None, table: str | None = None) -> int | None:
        """The line where ``key`` (of a plugin's ``table``, or of the main table) is set, or
        where the table itself is opened when ``key`` is None: a ``[header]`` (a comment
        may follow it), a dotted key (``jsonrpc-tcp.host = ...``) or an inline table
        (``jsonrpc-tcp = {host = ...}``) all count."""
        wanted = tuple(self.table_name.split("."))
        wanted += (table,) if table is not None else ()
        wanted += (key,) if key is not None else ()
        return _line_of(self.text, wanted)

    def error(self, problem: str, key: str | None = None, table: str | None = None) -> SettingsError:
        """A :class:`SettingsError` for this file, with the line of ``key`` if found."""
        return SettingsError(problem, self.path, self.line_of(key, table) if self.path else None)

    def table(self, plugin: str) -> Mapping[str, Any]:
        """The settings table of ``plugin`` (empty when the file has none)."""
        return self.tables.get(plugin, {})


def find_settings(cwd: Path | None = None) -> Path | None:
    """The settings file that applies in ``cwd`` (default: the working directory)."""
    named = os.environ.get(ENV_VAR)
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"{ENV_VAR} names {named!r}, which is not a file")
        return path
    base = cwd or Path.cwd()
    candidate = base / "berrymq.toml"
    if candidate.is_file() and not _is_empty(candidate):
        return candidate
    pyproject = base / "pyproject.toml"
    return pyproject if pyproject.is_file() and holds_our_table(pyproject) else None


def _is_empty(path: Path) -> bool:
    """Whether the TOML file at ``path`` sets nothing at all (blank, or only comments): a
    ``berrymq.toml`` without a ``[berrymq]`` table is passed over only then. One that
    sets other keys is berryMQ's still, by its name, and is reported (unknown top-level
    key): passing over it would silently ignore settings written in the wrong place."""
    try:
        return not tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # reported when it is loaded


def load_settings(path: Path | None = None, *, search: bool = True) -> Settings:
    """Parse and check the settings file at ``path``, or the one :func:`find_settings`
    finds when ``search`` is true; an empty :class:`Settings` when there is none."""
    if path is None and search:
        path = find_settings()
    if path is None:
        return Settings()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read the settings file: {exc.strerror}", path) from exc
    except UnicodeDecodeError as exc:
        raise SettingsError("the settings file is not UTF-8", path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_line(exc)
        if line is None and "end of document" in str(exc):
            line = max(1, len(text.splitlines()))
        bom = " (the file begins with a byte order mark: save it without one)" if (
            text.startswith("\ufeff")) else ""
        raise SettingsError(f"not valid TOML: {exc}{bom}", path, line) from exc
    is_pyproject = path.name == "pyproject.toml"
    table_name = "tool.berrymq" if is_pyproject else "berrymq"
    blank = Settings(path=path, table_name=table_name, text=text)
    if is_pyproject:
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise SettingsError(f"'tool' is {type(tool).__name__}, not a table: berryMQ's "
                                "settings go in its [tool.berrymq] table", path,
                                _line_of(text, ("tool",)))
        if "berrymq" in data:  # (beside [tool.berrymq] too: its allow-list would be dropped)
            both = " (this file has both: merge them there)" if "berrymq" in tool else ""
            raise SettingsError("a [berrymq] table in pyproject.toml is not read: there "
                                f"berryMQ's settings go in [tool.berrymq]{both}", path,
                                _line_of(text, ("berrymq",)))
        table = tool.get("berrymq", {})
    else:
        unknown = sorted(set(data) - {"berrymq"})
        if unknown:
            raise SettingsError(
                f"unknown top-level key {unknown[0]!r}; settings go in the [berrymq] table",
                path,
                _line_of(text, (unknown[0],)),
            )
        table = data.get("berrymq", {})
    if not isinstance(table, dict):
        raise blank.error(f"[{table_name}] must be a table")
    core: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if key in CORE_KEYS:
            problem = core_problem(key, value)
            if problem is not None:
                raise blank.error(str(problem), key)
            core[key] = value
        elif isinstance(value, dict):
            tables[key] = value
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            raise blank.error(
                f"{key!r} in [{table_name}] is an array of tables; a plugin's settings are "
                f"one table: write [{table_name}.{key}], not [[{table_name}.{key}]]",
                key,
            )
        else:
            raise blank.error(
                f"unknown key {key!r} in [{table_name}]; known keys: "
                f"{', '.join(sorted(CORE_KEYS))}, or a [{table_name}.<plugin>] table",
                key,
            )
    for key in ("plugins", "disable"):
        names = core.get(key, [])
        if not all(isinstance(name, str) and name for name in names):
            raise blank.error(f"{key} must be a list of plugin names (strings)", key)
    if "plugins" in core and "disable" in core:
        raise blank.error("give either plugins (an allow-list) or disable, not both", "disable")
    plugins = core.pop("plugins", None)
    return Settings(
        path=path,
        table_name=table_name,
        plugins=tuple(plugins) if plugins is not None else None,
        disable=tuple(core.pop("disable", ())),
        core=core,
        tables=tables,
        text=text,
    )


def _fits(value: object, expected: type | tuple[type, ...]) -> bool:
    """Whether ``value`` (from TOML) is of a declared type: ``true`` is no number, though
    Python's bool is an int, and ``1`` is a float as Python takes it."""
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):  # (bool, or a type above it other than the numbers: object)
        return isinstance(value, tuple(kind for kind in kinds if kind not in (int, float)))
    return isinstance(value, kinds) or (isinstance(value, int) and float in kinds)


def check_table(settings: Settings, plugin: str, schema: Mapping[str, type | tuple[type, ...]],
                checks: Mapping[str, Callable[[Any], str | None]] | None = None,
                paths: Collection[str] = (),
                blame: Callable[[str], PluginError] | None = None) -> None:
    """Raise a :class:`SettingsError` for an unknown key, a wrong type or a value that its
    check (``checks``, by key) refuses in a plugin's table. The check of a key in
    ``paths`` gets the value as :meth:`Settings.file_path` makes it.

    A check that raises is the plugin's fault, not the file's: a :class:`PluginError`
    naming the plugin, made by ``blame(problem)`` (the plugin host's, which adds how to
    turn the plugin off), or a plain one."""
    for key, value in settings.table(plugin).items():
        expected = schema.get(key)
        if expected is None:
            known = ", ".join(sorted(schema)) or "none"
            raise settings.error(
                f"unknown key {key!r} for plugin {plugin!r} (known keys: {known})", key, plugin
            )
        if not _fits(value, expected):
            raise settings.error(
                f"{plugin}.{key} must be {_type_name(expected)}, got {type(value).__name__}",
                key,
                plugin,
            )
        check = checks.get(key) if checks else None
        if check is None:
            continue
        used = settings.file_path(value) if key in paths and isinstance(value, str) else value
        try:
            problem = check(used)
        except Exception as exc:  # named as the plugin's fault, with its cause
            line = settings.line_of(key, plugin) if settings.path else None
            where = f" (set at {settings.path}:{line})" if line is not None else ""
            text = " ".join(str(exc).split())
            failure = (f"raised {type(exc).__name__} in its check of the setting "
                       f"{plugin}.{key}{where}: {text}")
            error = blame(failure) if blame else PluginError(f"plugin {plugin!r} {failure}", plugin)
            raise error from exc
        if problem is not None:
            raise settings.error(f"{plugin}.{key} {problem}", key, plugin)


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)


def _toml_line(exc: tomllib.TOMLDecodeError) -> int | None:
    # Python 3.11's message ends with "(at line L, column C)"; 3.14 also sets .lineno.
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    text = str(exc)
    marker = "(at line "
    start = text.rfind(marker)
    if start < 0:
        return None
    digits = text[start + len(marker):].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


def _line_of(text: str, wanted: tuple[str, ...]) -> int | None:
    """The first line that sets ``wanted`` (a full dotted path) or something in it, or the
    inline table that holds it."""
    size = len(wanted)
    for number, path, value in _key_lines(text):
        if path[:size] == wanted or (wanted[:len(path)] == path and value.startswith("{")):
            return number
    return None


def _key_lines(text: str) -> Iterator[tuple[int, tuple[str, ...], str]]:
    """Each line that opens a table (or an array of tables) or sets a key: its number, the
    full dotted path of the table or key (``("berrymq", "jsonl", "path")``) and, for a key,
    the text after ``=``.

    Line by line, not a parser: a line inside a multi-line string or array that looks like
    a key may be taken for one, at worst giving a wrong line number in an error.
    """
    table: tuple[str, ...] | None = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[["):
            # An array of tables: none of berryMQ's settings are in one, but its header is
            # the line to name for one written where a table belongs.
            found = _dotted_key(line, 2)
            if found is not None and line[found[1]:found[1] + 2] == "]]":
                yield number, found[0], "[["
            table = None
            continue
        if line.startswith("["):
            found = _dotted_key(line, 1)
            if found is not None and line[found[1]:found[1] + 1] == "]":
                rest = line[found[1] + 1:].strip()
                if not rest or rest.startswith("#"):
                    table = found[0]
                    yield number, table, ""
            continue
        found = _dotted_key(line, 0)
        if table is not None and found is not None and line[found[1]:found[1] + 1] == "=":
            yield number, table + found[0], line[found[1] + 1:].strip()


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted_key(line: str, start: int) -> tuple[tuple[str, ...], int] | None:
    """The dotted key (bare or quoted parts) at ``line[start:]`` and the index after it
    and the blanks that follow, or None when there is no key there."""
    parts: list[str] = []
    index = start
    while True:
        index = _skip_blanks(line, index)
        char = line[index:index + 1]
        if char == '"':
            end = index + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            try:
                part = tomllib.loads(f"k = {line[index:end + 1]}")["k"]
            except tomllib.TOMLDecodeError:
                return None
            index = end + 1
        elif char == "'":
            end = line.find("'", index + 1)
            if end < 0:
                return None
            part, index = line[index + 1:end], end + 1
        else:
            match = _BARE_KEY.match(line, index)
            if match is None:
                return None
            part, index = match.group(), match.end()
        parts.append(part)
        index = _skip_blanks(line, index)
        if line[index:index + 1] != ".":
            return tuple(parts), index
        index += 1


def _skip_blanks(line: str, index: int) -> int:
    while line[index:index + 1] in (" ", "\t"):
        index += 1
    return index
