"""Whether a ``pyproject.toml`` holds berryMQ's settings (its ``[tool.berrymq]`` table),
for :func:`berrymq.settings.find_settings`: also when the file is not valid TOML, so that
a broken file that holds them is reported rather than passed over."""

from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["holds_our_table"]


def holds_our_table(pyproject: Path) -> bool:
    """Whether ``pyproject`` holds berryMQ's settings, or may: its ``[tool.berrymq]``
    table, a ``[berrymq]`` table written as in ``berrymq.toml`` (reported when loaded,
    not passed over in silence), or, when it is not valid TOML, a line that may set it
    (:func:`_names_our_table`: the table may be written ``[tool] berrymq = {...}`` or
    ``["tool"."berrymq"]``; skipping the file would drop the user's allow-list, and
    every installed plugin would run)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except OSError:  # unreadable: it may hold them; loading it says why it cannot be read
        return True
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return _names_our_table(pyproject.read_text(encoding="utf-8", errors="replace"))
    tool = data.get("tool")
    return (isinstance(tool, dict) and "berrymq" in tool) or "berrymq" in data


def _names_our_table(text: str) -> bool:
    """Whether a line of ``text`` (not valid TOML) may open or set berryMQ's table, however
    written: a table header or a key with ``berrymq`` as one of its parts
    (``[tool.berrymq]  # ours``, ``["tool"."berrymq"]``, ``berrymq = {...}`` under
    ``[tool]``, ``berrymq.plugins = [...]``). When in doubt it says yes: passing over a
    file that holds the table would drop the user's allow-list in silence. A line that
    only names the package does not: a requirement (``"berrymq>=0.4"``) or a key of a
    dependency table (``berrymq = "^0.4"`` under ``[tool.poetry.dependencies]``); such a
    broken file is the project's, not berryMQ's, to report."""
    header: list[str] = []
    for line in text.removeprefix("\ufeff").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):  # a header: [tool.berrymq], [[a.b]] # comment
            header = path = _parts(stripped.lstrip("[").partition("]")[0])
        else:  # a key = value (not a requirement such as "berrymq==0.4", "berrymq >= 1")
            name, equals, value = stripped.partition("=")
            if not equals or value.startswith("=") or name.rstrip().endswith(("<", ">", "!", "~")):
                continue
            path = header + _parts(name)
        if "berrymq" in path and not _a_dependency(path[:path.index("berrymq")]):
            return True
    return False


def _a_dependency(tables: list[str]) -> bool:
    """Whether a key under ``tables`` names a dependency (Poetry's and PDM's tables of
    dependencies, PEP 621's optional ones, PEP 735's groups)."""
    return any(table.endswith("dependencies") or table == "dependency-groups"
               for table in tables)


def _parts(name: str) -> list[str]:
    """The parts of a dotted TOML name, quotes and spaces dropped, in lower case."""
    return name.replace('"', "").replace("'", "").replace(" ", "").lower().split(".")
