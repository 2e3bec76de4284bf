"""The NATS benchmark under the name issue 5 gave it: runs bench/nats_bridge.py.

    python bench/nats.py [--url nats://127.0.0.1:4222] [-n 50000] [--rounds 5] [--asks 500]

The benchmark itself lives in nats_bridge.py: a script run from bench/ has this folder
first on ``sys.path``, where a module named ``nats`` would stand in for the nats-py
package. So this file, when imported as ``nats`` (by a script of this folder that loads
the NATS plugin), takes the folder off the path and hands the real package over.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    sys.argv[0] = os.path.join(HERE, "nats_bridge.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
else:  # imported as "nats": be nats-py (its submodules then come from its own folder)
    saved = sys.path[:]
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != HERE]
    try:
        del sys.modules[__name__]
        real = importlib.import_module(__name__)
    finally:
        sys.path[:] = saved
    sys.modules[__name__] = real
