"""SPEC 8 and 9: finding, parsing and checking the settings file, in this process and as the
default bus of a new process meets it; the plugins list, the disable list, a plugin's own
table and the ``berrymq plugins`` command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, installed, run_berrymq

import berrymq
from berrymq import (
    Bus,
    PluginError,
    SettingsError,
)
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost
from berrymq.registries import SettingsSchema
from berrymq.settings import Settings, find_settings, load_settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BERRYMQ_CONFIG", raising=False)
    return tmp_path


def _python(cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60, check=False)


# Prints, as JSON, what the settings did to the default bus: observed through behaviour.
PROBE = """
    import json, threading, logging
    import berrymq
    from berrymq import regist_function, twitter
    out = {}
    def boom(message):
        raise RuntimeError("boom")
    regist_function("probe:boom", boom, weak=False)
    try:
        twitter("probe:boom")
        out["raises"] = False
    except ExceptionGroup:
        out["raises"] = True
    count = [0]
    def loop(message):
        count[0] += 1
        twitter("probe:loop")
    regist_function("probe:loop", loop, weak=False)
    logging.disable(logging.CRITICAL)
    twitter("probe:loop")
    out["hops"] = count[0]
    where = []
    done = threading.Event()
    regist_function("probe:thread", lambda m: (where.append(threading.get_ident()), done.set()),
                    weak=False)
    twitter("probe:thread")
    done.wait(10)
    out["pool"] = where != [threading.get_ident()]
    print(json.dumps(out))
"""


def _probe(cwd: Path, **env: str) -> dict[str, Any]:
    done = _python(cwd, PROBE, **env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_no_file_means_empty_settings(in_tmp: Path) -> None:
    assert find_settings() is None
    settings = load_settings()
    assert settings.path is None and settings.plugins is None and settings.disable == ()


def test_search_order(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_settings() is None  # no [tool.berrymq] table
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.berrymq]\ndisable = ["local"]\n')
    assert find_settings() == in_tmp / "pyproject.toml"
    assert load_settings().disable == ("local",)
    (in_tmp / "berrymq.toml").write_text('[berrymq]\nplugins = ["local"]\n')
    assert find_settings() == in_tmp / "berrymq.toml"
    other = in_tmp / "elsewhere.toml"
    other.write_text("[berrymq]\nhop_limit = 7\n")
    monkeypatch.setenv("BERRYMQ_CONFIG", str(other))
    assert find_settings() == other
    assert load_settings().core == {"hop_limit": 7}


def test_a_berrymq_toml_that_sets_nothing_is_passed_over(in_tmp: Path) -> None:
    (in_tmp / "pyproject.toml").write_text("[tool.berrymq]\nhop_limit = 9\n")
    (in_tmp / "berrymq.toml").write_text("# nothing here yet\n\n")
    assert find_settings() == in_tmp / "pyproject.toml"
    assert load_settings().core == {"hop_limit": 9}
    (in_tmp / "pyproject.toml").unlink()
    assert find_settings() is None


def test_a_berrymq_toml_with_keys_but_no_berrymq_table_is_an_error(in_tmp: Path) -> None:
    (in_tmp / "pyproject.toml").write_text("[tool.berrymq]\nhop_limit = 9\n")
    (in_tmp / "berrymq.toml").write_text("# forgot the table\nhop_limit = 3\n")
    assert find_settings() == in_tmp / "berrymq.toml"  # not silently left for pyproject's
    with pytest.raises(SettingsError, match=r"berrymq.toml:2: unknown top-level key 'hop_limit'"):
        load_settings()
    (in_tmp / "berrymq.toml").write_text("[berrymq\n")  # broken: reported, not passed over
    assert find_settings() == in_tmp / "berrymq.toml"


def test_config_env_naming_a_missing_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_CONFIG", str(in_tmp / "missing.toml"))
    with pytest.raises(SettingsError, match="BERRYMQ_CONFIG names .*missing.toml.*not a file"):
        load_settings()


def _error(in_tmp: Path, text: str, name: str = "berrymq.toml") -> SettingsError:
    path = in_tmp / name
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        PluginHost(load_settings(path))
    assert f"{path}:{info.value.line}:" in str(info.value)  # the file and the line
    return info.value


def test_a_pyproject_whose_tool_is_not_a_table_is_not_ours_unless_named(in_tmp: Path) -> None:
    """``tool = "x"`` is valid TOML: berryMQ raised AttributeError on it, even for
    ``berrymq --version``. Found by search, it is no settings file of berryMQ's; named,
    it is refused naming the file and the line."""
    (in_tmp / "pyproject.toml").write_text('tool = "berrymq"\n\n[project]\nname = "x"\n')
    assert find_settings() is None
    assert load_settings().path is None
    error = _error(in_tmp, 'tool = 5\n', "pyproject.toml")
    assert error.line == 1 and "'tool' is int, not a table" in str(error)


@pytest.mark.parametrize("table", [
    '[tool]\nberrymq = { plugins = ["local"] }\n',
    '[tool]\nberrymq.plugins = ["local"]\n',
    '["tool"."berrymq"]\nplugins = ["local"]\n',
    '[ tool . berrymq ]\nplugins = ["local"]\n',
])
def test_a_broken_pyproject_that_may_hold_the_table_is_reported_however_it_is_written(
        in_tmp: Path, table: str) -> None:
    """Only a literal ``[tool.berrymq`` made a broken pyproject.toml berryMQ's: any other
    spelling of the table was passed over, its allow-list with it, and every installed
    plugin ran."""
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x\n' + table)
    assert find_settings() == in_tmp / "pyproject.toml"
    with pytest.raises(SettingsError, match="not valid TOML") as info:
        load_settings()
    assert info.value.line == 2


@pytest.mark.parametrize("text", [
    '[project]\nname = "x\n',
    '[project]\nname = "x"\ndependencies = [\n  "berrymq>=0.4",\n]\n[tool.black]\nline = [1,\n',
    '[project]\ndependencies = ["berrymq"]\n[tool.black]\nline = [1,\n',
    '[project]\ndependencies = [\n  "berrymq==0.4",\n  "berrymq == 0.4",\n  '
    '"berrymq[nats]==0.4",\n  ["berrymq>=0.4"]\n]\n[tool.black]\nline = [1,\n',
])
def test_a_broken_pyproject_that_does_not_set_the_table_is_not_ours(
        in_tmp: Path, text: str) -> None:
    """Naming the package as a dependency does not make a broken file berryMQ's: it
    stopped every program of the project with the project's own TOML error."""
    (in_tmp / "pyproject.toml").write_text(text)
    assert find_settings() is None


def test_a_berrymq_table_at_the_top_of_pyproject_is_refused_naming_tool_berrymq(
        in_tmp: Path) -> None:
    """Written as berrymq.toml has it, it was ignored without a word."""
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x"\n\n[berrymq]\n'
                                           'plugins = ["local"]\n')
    assert find_settings() == in_tmp / "pyproject.toml"
    with pytest.raises(SettingsError, match=r"go in \[tool.berrymq\]") as info:
        load_settings()
    assert info.value.line == 4


def test_a_berrymq_table_in_pyproject_beside_tool_berrymq_is_refused_too(
        in_tmp: Path) -> None:
    """With [tool.berrymq] there as well, the [berrymq] table (and its allow-list) was
    dropped without a word."""
    (in_tmp / "pyproject.toml").write_text('[tool.berrymq]\nhop_limit = 3\n\n[berrymq]\n'
                                           'plugins = ["local"]\n')
    with pytest.raises(SettingsError, match=r"go in \[tool.berrymq\] \(this file has both: "
                                            r"merge them there\)") as info:
        load_settings()
    assert info.value.line == 4


def test_an_unreadable_pyproject_is_a_settings_error_naming_it(
        in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It may hold the table: passed over, its allow-list would be dropped; it was a
    traceback (PermissionError) at the first message. (A file root can read anyway: the
    refusal of the read is made here.)"""
    pyproject = in_tmp / "pyproject.toml"
    pyproject.write_text('[tool.berrymq]\nplugins = ["local"]\n')
    read_text = Path.read_text

    def refused(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "pyproject.toml":
            raise PermissionError(13, "Permission denied")
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refused)
    assert find_settings() == pyproject
    with pytest.raises(SettingsError, match="cannot read the settings file: Permission denied"):
        load_settings()


def test_a_byte_order_mark_is_named_when_it_breaks_the_file(in_tmp: Path) -> None:
    error = _error(in_tmp, '\ufeff[berrymq]\nhop_limit = 3\n')
    assert "byte order mark" in str(error)


def test_malformed_toml_names_file_and_line(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\nplugins = ["local"]\nhop_limit = = 3\n')
    assert error.line == 3
    assert "not valid TOML" in str(error)
    assert f"berrymq.toml:{error.line}:" in str(error)


def test_unknown_plugin_names_line(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\n\nplugins = ["local", "nope"]\n')
    assert "unknown plugin 'nope'" in str(error)
    assert error.line == 3
    error = _error(in_tmp, '[berrymq]\ndisable = ["nope"]\n')
    assert "disable names unknown plugin 'nope'" in str(error) and error.line == 2


def test_unknown_core_key(in_tmp: Path) -> None:
    error = _error(in_tmp, "[berrymq]\nhop_limit = 3\ncolour = 'red'\n")
    assert "unknown key 'colour'" in str(error) and error.line == 3


def test_unknown_top_level_table(in_tmp: Path) -> None:
    error = _error(in_tmp, "[berrymq]\n[other]\nx = 1\n")
    assert "unknown top-level key 'other'" in str(error) and error.line == 2


def test_wrong_types(in_tmp: Path) -> None:
    assert "hop_limit must be an integer" in str(_error(in_tmp, '[berrymq]\nhop_limit = "3"\n'))
    error = _error(in_tmp, "[berrymq]\nraise_errors = 1\n")
    assert "raise_errors must be true or false" in str(error) and error.line == 2
    assert "list of plugin names" in str(_error(in_tmp, "[berrymq]\nplugins = [1]\n"))
    assert "either plugins" in str(
        _error(in_tmp, '[berrymq]\nplugins = ["local"]\ndisable = ["local"]\n')
    )
    assert "at least 1" in str(_error(in_tmp, "[berrymq]\nhop_limit = 0\n"))
    assert "route_cache_size must be an integer" in str(
        _error(in_tmp, "[berrymq]\nroute_cache_size = 1.5\n"))
    assert "at least 1" in str(_error(in_tmp, "[berrymq]\nroute_cache_size = 0\n"))


@pytest.mark.parametrize(("text", "line", "problem"), [
    ('[berrymq]  # main settings\nhop_limit = "x"\n', 2, "hop_limit must be an integer"),
    ('[berrymq]\n\njsonrpc-tcp.bogus = 1\n', 3, "unknown key 'bogus'"),
    ('[berrymq.jsonrpc-tcp] # tcp\nbogus = 1\n', 2, "unknown key 'bogus'"),
    ('[berrymq]\nhop_limit = 3\njsonrpc-tcp = { host = "h", bogus = 1 }\n', 3,
     "unknown key 'bogus'"),
    ('[ "berrymq" . \'jsonrpc-tcp\' ]\n"bogus" = 1\n', 2, "unknown key 'bogus'"),
    ('[berrymq]\nmystery.key = 1\n', 2, "unknown plugin 'mystery'"),
    ('[berrymq]\nmystery = { key = 1 }\n', 2, "unknown plugin 'mystery'"),
    ('hop_limit = 3\n[berrymq]\n', 1, "unknown top-level key 'hop_limit'"),
])
def test_the_line_is_found_after_a_comment_and_for_dotted_keys_and_inline_tables(
        in_tmp: Path, text: str, line: int, problem: str) -> None:
    error = _error(in_tmp, text)
    assert problem in str(error) and error.line == line


def test_the_line_in_pyproject_is_found_for_a_dotted_key(in_tmp: Path) -> None:
    error = _error(in_tmp, "[tool]  # tools\nberrymq.hop_limit = 0\n", "pyproject.toml")
    assert "hop_limit must be at least 1" in str(error) and error.line == 2


def test_table_for_unknown_plugin(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\n\n[berrymq.mystery]\nkey = 1\n')
    assert "unknown plugin 'mystery'" in str(error) and error.line == 3
    assert "to have it" not in str(error)  # no plugin of berryMQ's: nothing to suggest


@pytest.mark.parametrize("text", ['[berrymq]\n[[berrymq.jsonrpc-tcp]]\nhost = "a"\n',
                                  '[berrymq]\njsonrpc-tcp = [{host = "a"}]\n'])
def test_a_plugins_table_written_as_an_array_of_tables_says_so(in_tmp: Path, text: str) -> None:
    error = _error(in_tmp, text)
    assert error.line == 2
    assert error.problem == (
        "'jsonrpc-tcp' in [berrymq] is an array of tables; a plugin's settings are one "
        "table: write [berrymq.jsonrpc-tcp], not [[berrymq.jsonrpc-tcp]]")


def test_a_plugin_table_is_checked_against_its_declared_keys_types_and_checks(
        in_tmp: Path) -> None:
    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: SettingsSchema) -> None:
            schema.add("declarer", path=str, count=int)
            schema.add_check("declarer", "count",
                             lambda value: None if value > 0 else f"must be above 0, got {value}")

    def load(text: str) -> PluginHost:
        path.write_text(text)
        return PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])

    path = in_tmp / "berrymq.toml"
    assert load('[berrymq.declarer]\npath = "x"\ncount = 2\n').settings_for("declarer") == {
        "path": "x", "count": 2}
    with pytest.raises(SettingsError, match="unknown key 'colour' for plugin 'declarer'") as info:
        load('[berrymq.declarer]\npath = "x"\n\ncolour = 2\n')
    assert info.value.line == 4
    with pytest.raises(SettingsError, match="declarer.count must be an integer"):
        load('[berrymq.declarer]\ncount = "two"\n')  # the type, before the check
    with pytest.raises(SettingsError, match="declarer.count must be above 0, got 0") as info:
        load('[berrymq.declarer]\npath = "x"\ncount = 0\n')
    assert info.value.line == 3
    error = _error(in_tmp, "[berrymq]\n\n[berrymq.local]\nbogus_key = 1\n")  # declares none
    assert "unknown key 'bogus_key' for plugin 'local'" in str(error) and error.line == 4


def test_a_check_that_raises_is_an_error_naming_the_plugin_the_setting_and_the_line(
        in_tmp: Path) -> None:
    """It was a bare traceback (exit 1), at ``berrymq plugins`` and a program's first
    message: the plugin's fault, named as other faults of a plugin are."""
    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: SettingsSchema) -> None:
            schema.add("declarer", level=int)
            schema.add_check("declarer", "level", lambda value: str(1 / 0))

    path = in_tmp / "berrymq.toml"
    path.write_text("[berrymq.declarer]\n\nlevel = 3\n")
    with pytest.raises(PluginError) as info:
        PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])
    assert info.value.plugin == "declarer"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert str(info.value) == (
        "plugin 'declarer' (registered in code) raised ZeroDivisionError in its check of the "
        f"setting declarer.level (set at {path}:3): division by zero; uninstall it, disable it "
        "in the settings file (disable = ['declarer']) or set BERRYMQ_BLOCK_PLUGINS=declarer")


@pytest.mark.parametrize(("declare", "problem"), [
    (lambda schema: schema.add("declarer", level="int"),
     "it declares the setting declarer.level as 'int', which is not a type"),
    (lambda schema: schema.add("declarer", level=(int, "float")),
     "it declares the setting declarer.level as (<class 'int'>, 'float'), which is not a type"),
    (lambda schema: schema.add_check("declarer", "level", "positive"),
     "it declares as the check of the setting declarer.level 'positive', which cannot be "
     "called")])
def test_a_setting_declared_with_no_type_or_check_is_the_declaring_plugins_error(
        declare: Any, problem: str) -> None:
    """Declared, not used: refused when the plugins load, whether a table sets the key or not."""
    assert (f"plugin 'declarer' (registered in code) raised TypeError in its hook "
            f"berrymq_declare_settings: {problem}") in _declaring_error(declare)


def _declaring_error(declare: Callable[[SettingsSchema], None]) -> str:
    """The PluginError of a plugin ``declarer`` whose declare hook runs ``declare``."""
    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: SettingsSchema) -> None:
            declare(schema)

    with pytest.raises(PluginError) as info:
        PluginHost(Settings(), extra_plugins=[("declarer", Declares())])
    assert (info.value.plugin, info.value.hook) == ("declarer", "berrymq_declare_settings")
    return str(info.value)


@pytest.mark.parametrize("declare", [
    lambda schema: schema.add("jsonrpc-tcp", bogus=int),
    lambda schema: schema.add_check("jsonrpc-tcp", "max_size", lambda value: None)])
def test_a_plugin_declares_the_settings_of_its_own_table_only(declare: Any) -> None:
    """Another plugin's table took keys it does not read (accepted in silence), a type
    that made a good value an error blamed on the file, or a check beside its own."""
    assert ("of plugin 'jsonrpc-tcp', another plugin's table; a plugin declares the "
            "settings of its own ([berrymq.declarer])") in _declaring_error(declare)


def test_a_plugin_setting_of_float_takes_an_integer_and_no_number_takes_true(
        in_tmp: Path) -> None:
    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: SettingsSchema) -> None:
            schema.add("declarer", ratio=float, level=(int, float), flag=bool, anything=object)

    def load(text: str) -> PluginHost:
        path.write_text(text)
        return PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])

    path = in_tmp / "berrymq.toml"
    assert load("[berrymq.declarer]\nratio = 1\nlevel = 2.5\nflag = true\nanything = false\n"
                ).settings_for("declarer") == {"ratio": 1, "level": 2.5, "flag": True,
                                               "anything": False}
    with pytest.raises(SettingsError, match="declarer.level must be"):
        load("[berrymq.declarer]\nlevel = true\n")
    with pytest.raises(SettingsError, match="declarer.ratio must be"):
        load("[berrymq.declarer]\nratio = false\n")


def test_the_check_of_a_path_sees_it_relative_to_the_settings_file(in_tmp: Path) -> None:
    """``add_check(..., path=True)``: the check gets the file's path as the plugin will
    use it (``~`` expanded, relative to the settings file's folder, not the working
    directory); the table keeps the value as written."""
    seen: list[str] = []

    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: SettingsSchema) -> None:
            schema.add("declarer", path=str, name=str)
            schema.add_check("declarer", "path", seen.append, path=True)
            schema.add_check("declarer", "name", seen.append)

    folder = in_tmp / "conf"
    folder.mkdir()
    path = folder / "berrymq.toml"
    for written, expected in [("data/x.log", str(folder / "data/x.log")),
                              ("/var/x.log", "/var/x.log"),
                              ("~/x.log", str(Path("~/x.log").expanduser()))]:
        seen.clear()
        path.write_text(f'[berrymq.declarer]\npath = "{written}"\nname = "{written}"\n')
        host = PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])
        assert seen == [expected, written]  # a key not declared a path is given as written
        assert host.settings_for("declarer")["path"] == written
        assert host.settings.file_path(written) == expected
    assert Settings().file_path("data/x.log") == "data/x.log"  # no file: the working directory


def test_pyproject_errors_name_the_tool_table(in_tmp: Path) -> None:
    error = _error(in_tmp, "[tool.berrymq]\nwhat = 1\n", "pyproject.toml")
    assert "unknown key 'what' in [tool.berrymq]" in str(error) and error.line == 2


def test_settings_error_in_pyproject_and_config_env(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.berrymq]\nraise_errors = true\nbad_key = 2\n')
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n')
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]  # the first send raises it, unwrapped
    assert "SettingsError" in last and f"{tmp_path / 'pyproject.toml'}:3" in last, done.stderr
    assert "bad_key" in last
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n',
                   BERRYMQ_CONFIG=str(tmp_path / "missing.toml"))
    assert done.returncode != 0 and "missing.toml" in done.stderr


def test_core_settings_reach_the_bus(in_tmp: Path) -> None:
    path = in_tmp / "berrymq.toml"
    path.write_text("[berrymq]\nraise_errors = true\nhop_limit = 4\nmultiplicity = 2\n"
                    "route_cache_size = 2\n")
    bus = Bus(plugins=PluginHost(load_settings(path)))
    bus.start()
    assert (bus.raise_errors, bus.hop_limit, bus.multiplicity) == (True, 4, 2)
    for name in ("a:x", "b:x", "c:x"):  # the route cache holds 2: the oldest goes
        bus.twitter(name)
    assert sorted(bus.routes) == ["b:x", "c:x"]
    bus.close()
    explicit = Bus(hop_limit=9, route_cache_size=5, plugins=PluginHost(load_settings(path)))
    explicit.start()
    assert (explicit.hop_limit, explicit.index.limit) == (9, 5)
    explicit.close()
    with pytest.raises(ValueError, match="route_cache_size must be at least 1"):
        Bus(route_cache_size=0)


def test_settings_file_configures_the_default_bus_of_a_new_process(tmp_path: Path) -> None:
    result = _probe(tmp_path)  # no settings file: the defaults
    assert result["raises"] is False
    assert result["pool"] is False
    assert 2 <= result["hops"] <= 1000
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nraise_errors = true\nhop_limit = 4\n")
    result = _probe(tmp_path)
    assert result["raises"] is True
    assert result["pool"] is False
    assert 1 <= result["hops"] <= 5
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nmultiplicity = 2\n")
    result = _probe(tmp_path)
    assert result["pool"] is True


def test_settings_line_of() -> None:
    settings = Settings(path=Path("x.toml"), text='[berrymq]\na = 1\n[berrymq.p]\nb = 2\n')
    assert settings.line_of("a") == 2
    assert settings.line_of("b", "p") == 4
    assert settings.line_of(None, "p") == 3
    assert settings.line_of("zzz") is None
    # a line in a multi-line array that only looks like a header is not one
    settings = Settings(path=Path("x.toml"), text='[berrymq]\nnames = [\n[1],\n]\n[berrymq.p]\n')
    assert settings.line_of(None, "p") == 5


def test_plugins_allow_list_and_disable(tmp_path: Path) -> None:
    code = """
        import berrymq
        from berrymq import PluginNotAvailable
        results = []
        try:
            q = berrymq.Queue("a:*")
            berrymq.twitter("a:x")
            results.append("queue ok" if q.get_nowait().id == "a:x" else "queue wrong")
        except PluginNotAvailable as exc:
            results.append(f"queue unavailable: {exc}")
        try:
            berrymq.init_connection("tcp://127.0.0.1:0")
            results.append("tcp ok")
        except PluginNotAvailable as exc:
            results.append(f"tcp unavailable: {exc}")
        berrymq.get_bus().close()
        print("|".join(results))
    """
    settings = tmp_path / "berrymq.toml"
    settings.write_text('[berrymq]\nplugins = ["local"]\n')
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    queue_result, tcp_result = done.stdout.strip().split("|")
    assert queue_result == "queue ok"  # the core receivers make up the local API
    assert tcp_result.startswith("tcp unavailable") and "jsonrpc-tcp" in tcp_result

    settings.write_text('[berrymq]\ndisable = ["queues"]\n')
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    queue_result, tcp_result = done.stdout.strip().split("|")
    assert queue_result.startswith("queue unavailable") and "queues" in queue_result
    if installed("berrymq-jsonrpc-tcp"):
        assert tcp_result == "tcp ok"


def test_plugins_command(tmp_path: Path) -> None:
    done = run_berrymq("plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    by_name = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for name in ("local", "functions", "followers", "queues"):
        row = by_name[name]
        assert row[1] == "berrymq" and row[2] == berrymq.__version__ and row[3] == "yes", row

    (tmp_path / "berrymq.toml").write_text('[berrymq]\ndisable = ["local"]\n')
    done = run_berrymq("plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    by_name = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert by_name["local"][3] == "no"
    assert by_name["queues"][3] == "yes"
    assert str(tmp_path / "berrymq.toml") in done.stdout

    (tmp_path / "berrymq.toml").write_text('[berrymq]\nplugins = [\n')
    done = run_berrymq("plugins", cwd=tmp_path)
    assert done.returncode != 0
    assert str(tmp_path / "berrymq.toml") in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not installed("berrymq-jsonrpc-tcp"), reason="berrymq-jsonrpc-tcp not installed")
def test_per_plugin_table(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\n\n[berrymq.jsonrpc-tcp]\nhost = "127.0.0.1"\n')
    done = _python(tmp_path, """
        import berrymq
        address = berrymq.init_connection("tcp://127.0.0.1:0")
        print(address)
        berrymq.get_bus().close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("tcp://127.0.0.1:")
    (tmp_path / "berrymq.toml").write_text('[berrymq]\n\n[berrymq.jsonrpc-tcp]\nhots = "127.0.0.1"\n')
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n')
    assert done.returncode != 0
    assert f"{tmp_path / 'berrymq.toml'}:4" in done.stderr and "hots" in done.stderr
