"""berrymq.default: the default bus is made on first use and started by the API's first use.

Each check runs in a fresh interpreter (a real subprocess): the default bus of this test
process has long been made.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import child_env

PROBE = textwrap.dedent(
    """
    import json, sys
    from berrymq.hookspecs import hookimpl
    from berrymq.plugins import PluginHost, reset_plugin_host
    from berrymq.settings import Settings

    started = []

    class Probe:
        @hookimpl
        def berrymq_start_bus(self, bus):
            started.append(bus.name)

    reset_plugin_host(PluginHost(Settings(), extra_plugins=[("probe", Probe())]))
    import berrymq
    import berrymq.default as default

    out = {"made_at_import": default._filled() is not None or bool(default._waiting)}
    bus = berrymq.get_bus()
    out["get_bus_starts"] = bool(started)
    out["same_bus"] = berrymq.get_bus() is bus
    berrymq.twitter("a:b")
    out["first_use_starts"] = started == ["default"] and berrymq.get_bus() is bus
    berrymq.twitter("a:b")
    out["started_once"] = started == ["default"]
    own = berrymq.Bus(name="own")
    with berrymq.use_bus(own):
        out["use_bus"] = berrymq.get_bus() is own
    out["restored"] = berrymq.get_bus() is bus
    print(json.dumps(out))
    """
)


def test_the_default_bus_is_made_on_first_use_and_started_by_the_api(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "made_at_import": False,
        "get_bus_starts": False,
        "same_bus": True,
        "first_use_starts": True,
        "started_once": True,
        "use_bus": True,
        "restored": True,
    }
