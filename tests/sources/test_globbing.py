"""berrymq.sources._globbing: the paths a FileObserver pattern matches, as glob finds
them, but going round no symbolic-link loop and keeping what could not be read."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from berrymq.sources._globbing import literal_root, matching


def tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("1")
    (root / "a" / "b" / "two.txt").write_text("2")
    (root / "a" / ".hidden.txt").write_text("h")
    (root / "top.log").write_text("t")


def existing(paths: list[str]) -> list[str]:
    """``paths`` that are there, without a trailing separator (a part of a pattern
    without wildcards is not looked up: the FileObserver stats every path it is given)."""
    return sorted(path.rstrip(os.sep) for path in paths if os.path.lexists(path))


def test_it_finds_what_glob_finds(tmp_path: Path) -> None:
    tree(tmp_path)
    for pattern in ("*", "a/*.txt", "**/*.txt", "a/**", "**/", "a/.*", "*/b/*", "**/two.txt"):
        full = str(tmp_path) + os.sep + pattern
        found, unreadable = matching(full)
        assert existing(found) == existing(glob.glob(full, recursive=True)), pattern
        assert unreadable == []


def test_a_wildcard_does_not_match_a_leading_dot(tmp_path: Path) -> None:
    tree(tmp_path)
    found, _ = matching(str(tmp_path / "a" / "*.txt"))
    assert [os.path.basename(p) for p in found] == ["one.txt"]


def test_links_back_up_do_not_make_it_go_round(tmp_path: Path) -> None:
    tree(tmp_path)
    os.symlink(".", tmp_path / "a" / "self")
    os.symlink("..", tmp_path / "a" / "b" / "up")
    found, unreadable = matching(str(tmp_path / "**" / "two.txt"))
    assert existing(found) == [str(tmp_path / "a" / "b" / "two.txt")]
    assert unreadable == []


def test_a_directory_that_is_gone_is_no_error(tmp_path: Path) -> None:
    assert matching(str(tmp_path / "missing" / "*.txt")) == ([], [])


def test_a_file_in_place_of_a_directory_matches_nothing_as_in_glob(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    assert matching(str(tmp_path / "plain" / "*" / "x")) == ([], [])


def test_literal_root_is_where_the_wildcards_begin(tmp_path: Path) -> None:
    assert literal_root(str(tmp_path / "a" / "*" / "x.txt")) == str(tmp_path / "a")
    assert literal_root(str(tmp_path / "a" / "x.txt")) == str(tmp_path / "a")
    assert literal_root("*.txt") == os.curdir
