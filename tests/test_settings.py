"""SPEC 8: finding, parsing and checking the settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from berrymq import SettingsError
from berrymq.plugins import PluginHost
from berrymq.settings import Settings, find_settings, load_settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BERRYMQ_CONFIG", raising=False)
    return tmp_path


def test_no_file_means_empty_settings(in_tmp: Path) -> None:
    assert find_settings() is None
    settings = load_settings()
    assert settings.path is None and settings.plugins is None and settings.disable == ()


def test_search_order(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_settings() is None  # no [tool.berrymq] table
    (in_tmp / "pyproject.toml").write_text('[tool.berrymq]\ndisable = ["local"]\n')
    assert find_settings() == in_tmp / "pyproject.toml"
    assert load_settings().disable == ("local",)
    (in_tmp / "berrymq.toml").write_text('[berrymq]\nplugins = ["local"]\n')
    assert find_settings() == in_tmp / "berrymq.toml"
    other = in_tmp / "elsewhere.toml"
    other.write_text("[berrymq]\nhop_limit = 7\n")
    monkeypatch.setenv("BERRYMQ_CONFIG", str(other))
    assert find_settings() == other
    assert load_settings().core == {"hop_limit": 7}


def test_config_env_naming_a_missing_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERRYMQ_CONFIG", str(in_tmp / "missing.toml"))
    with pytest.raises(SettingsError, match="BERRYMQ_CONFIG names .*missing.toml.*not a file"):
        load_settings()


def _error(in_tmp: Path, text: str, name: str = "berrymq.toml") -> SettingsError:
    path = in_tmp / name
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        PluginHost(load_settings(path))
    assert str(path) in str(info.value)
    return info.value


def test_malformed_toml_names_file_and_line(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\nplugins = ["local"]\nhop_limit = = 3\n')
    assert error.line == 3
    assert "not valid TOML" in str(error)
    assert f"berrymq.toml:{error.line}:" in str(error)


def test_unknown_plugin_names_line(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\n\nplugins = ["local", "nope"]\n')
    assert "unknown plugin 'nope'" in str(error)
    assert error.line == 3


def test_unknown_core_key(in_tmp: Path) -> None:
    error = _error(in_tmp, "[berrymq]\nhop_limit = 3\ncolour = 'red'\n")
    assert "unknown key 'colour'" in str(error) and error.line == 3


def test_unknown_top_level_table(in_tmp: Path) -> None:
    error = _error(in_tmp, "[berrymq]\n[other]\nx = 1\n")
    assert "unknown top-level key 'other'" in str(error) and error.line == 2


def test_wrong_types(in_tmp: Path) -> None:
    assert "hop_limit must be an integer" in str(_error(in_tmp, '[berrymq]\nhop_limit = "3"\n'))
    assert "raise_errors must be true or false" in str(
        _error(in_tmp, "[berrymq]\nraise_errors = 1\n")
    )
    assert "list of plugin names" in str(_error(in_tmp, "[berrymq]\nplugins = [1]\n"))
    assert "either plugins" in str(
        _error(in_tmp, '[berrymq]\nplugins = ["local"]\ndisable = ["local"]\n')
    )
    assert "at least 1" in str(_error(in_tmp, "[berrymq]\nhop_limit = 0\n"))


def test_table_for_unknown_plugin(in_tmp: Path) -> None:
    error = _error(in_tmp, '[berrymq]\n\n[berrymq.mystery]\nkey = 1\n')
    assert "unknown plugin 'mystery'" in str(error) and error.line == 3


def test_unknown_key_in_plugin_table_is_checked_against_declared_keys(in_tmp: Path) -> None:
    from berrymq.hookspecs import hookimpl

    class Declares:
        @hookimpl
        def berrymq_declare_settings(self, schema: object) -> None:
            schema.add("declarer", path=str, count=int)  # type: ignore[attr-defined]

    path = in_tmp / "berrymq.toml"
    path.write_text('[berrymq.declarer]\npath = "x"\ncount = 2\n')
    host = PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])
    assert host.settings_for("declarer") == {"path": "x", "count": 2}
    path.write_text('[berrymq.declarer]\npath = "x"\n\ncolour = 2\n')
    with pytest.raises(SettingsError, match="unknown key 'colour' for plugin 'declarer'") as info:
        PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])
    assert info.value.line == 4
    path.write_text('[berrymq.declarer]\ncount = "two"\n')
    with pytest.raises(SettingsError, match="declarer.count must be an integer"):
        PluginHost(load_settings(path), extra_plugins=[("declarer", Declares())])


def test_pyproject_errors_name_the_tool_table(in_tmp: Path) -> None:
    error = _error(in_tmp, "[tool.berrymq]\nwhat = 1\n", "pyproject.toml")
    assert "unknown key 'what' in [tool.berrymq]" in str(error) and error.line == 2


def test_core_settings_reach_the_bus(in_tmp: Path) -> None:
    from berrymq import Bus

    path = in_tmp / "berrymq.toml"
    path.write_text("[berrymq]\nraise_errors = true\nhop_limit = 4\nmultiplicity = 2\n")
    bus = Bus(plugins=PluginHost(load_settings(path)))
    bus.start()
    assert (bus.raise_errors, bus.hop_limit, bus.multiplicity) == (True, 4, 2)
    bus.close()
    explicit = Bus(hop_limit=9, plugins=PluginHost(load_settings(path)))
    explicit.start()
    assert explicit.hop_limit == 9
    explicit.close()


def test_settings_line_of() -> None:
    settings = Settings(path=Path("x.toml"), text='[berrymq]\na = 1\n[berrymq.p]\nb = 2\n')
    assert settings.line_of("a") == 2
    assert settings.line_of("b", "p") == 4
    assert settings.line_of(None, "p") == 3
    assert settings.line_of("zzz") is None
