"""The figures of docs/delivery.md: issue 10's attacks and faults, re-run, as a table.

Run it as a script (it is not a test)::

    python bench/figures.py          # the probes of plugins/berrymq-jsonrpc/tests/test_attacks.py
    python bench/figures.py --nats   # and the NATS bridge's SIGKILL-and-restart tests

It runs the probe file with ``BERRYMQ_FIGURES`` naming a temporary file, into which each
probe appends one JSON line of what it measured (its ``figures`` fixture), reads the
outcome of each test from pytest's JUnit XML, and prints a Markdown table per kind of
figure (load held, faults survived, bad inputs tried) with the name of the test behind
each row. ``--nats`` also runs the two NATS tests that print what they measured and adds
their lines as printed. The run takes under a minute on a loaded 2-CPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROBES = "plugins/berrymq-jsonrpc/tests/test_attacks.py"
NATS = ("plugins/berrymq-nats/tests/test_outbox.py::"
        "test_server_killed_under_load_loses_nothing_without_a_report",
        "plugins/berrymq-nats/tests/test_outbox.py::"
        "test_a_reconnecting_receiver_misses_at_most_its_window")
KINDS = ("load held", "fault survived", "bad input")
#: (column title, how a row's value is shown)
COLUMNS: list[tuple[str, Any]] = [
    ("inputs", lambda r: _n(r.get("inputs"))),
    ("node MiB before → peak", lambda r: _pair(r, "rss_before_mib", "rss_peak_mib")),
    ("node threads before → peak", lambda r: _pair(r, "threads_before", "threads_peak")),
    ("sent", lambda r: _n(r.get("sent"))),
    ("delivered", lambda r: _n(r.get("delivered"))),
    ("refused at the call", lambda r: _n(r.get("refused_at_call"))),
    ("reported lost", lambda r: _n(r.get("reported_lost"))),
    ("lost without a report", lambda r: _n(r.get("lost_unreported"))),
]
_SHOWN = {"test", "kind", "what", "inputs", "rss_before_mib", "rss_peak_mib", "threads_before",
          "threads_peak", "sent", "delivered", "refused_at_call", "reported_lost",
          "lost_unreported"}


def _n(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _pair(row: dict[str, Any], before: str, peak: str) -> str:
    return f"{_n(row[before])} → {_n(row[peak])}" if before in row else ""


def _more(row: dict[str, Any]) -> str:
    """The other things a probe measured, as ``name value`` pairs."""
    parts = []
    for key, value in row.items():
        if key in _SHOWN:
            continue
        if key == "bytes_in":
            parts.append(f"{value / (1 << 20):,.1f} MiB sent to the node")
        elif key == "outcome":
            parts.append(str(value))
        else:
            parts.append(f"{key.replace('_', ' ')} {_n(value)}")
    return "; ".join(parts)


def outcomes(junit: Path) -> dict[str, str]:
    """Test name -> ``passed``, ``xfail (bug)``, ``FAILED`` or ``skipped``."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            found[name] = "FAILED"
        elif (skipped := case.find("skipped")) is not None:
            found[name] = "xfail (bug)" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            found[name] = "passed"
    return found


def run_probes(python: str) -> tuple[list[dict[str, Any]], dict[str, str], float]:
    with tempfile.TemporaryDirectory() as tmp:
        rows_file, junit = Path(tmp) / "figures.jsonl", Path(tmp) / "junit.xml"
        env = {**os.environ, "BERRYMQ_FIGURES": str(rows_file)}
        started = time.monotonic()
        subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", PROBES,
                        f"--junitxml={junit}"], cwd=ROOT, env=env, check=False,
                       stdout=subprocess.DEVNULL)
        took = time.monotonic() - started
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] \
            if rows_file.exists() else []
        return rows, outcomes(junit), took


def run_nats(python: str) -> list[str]:
    """What each NATS test printed (they print what they measured), one test at a time."""
    lines = []
    for test in NATS:
        done = subprocess.run([python, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test],
                              cwd=ROOT, check=False, capture_output=True, text=True)
        printed = [line.strip() for line in done.stdout.splitlines()
                   if line.startswith(("accepted ", "receiver re-subscribed"))]
        result = "passed" if done.returncode == 0 else f"exit code {done.returncode}"
        lines.append(f"`{test.split('::')[1]}` ({result}): "
                     + ("; ".join(printed) or "printed nothing (is nats-server installed?)"))
    return lines


def table(rows: list[dict[str, Any]], results: dict[str, str]) -> str:
    out = []
    for kind in KINDS:
        chosen = [r for r in rows if r.get("kind") == kind]
        if not chosen:
            continue
        out.append(f"\n**{kind[0].upper() + kind[1:]}**\n")
        titles = ["probe (test)", "what", *(t for t, _ in COLUMNS), "also measured", "outcome"]
        out.append("| " + " | ".join(titles) + " |")
        out.append("|" + "---|" * len(titles))
        for row in chosen:
            cells = [f"`{row['test']}`", str(row.get("what", "")),
                     *(show(row) for _, show in COLUMNS), _more(row),
                     results.get(row["test"], "?")]
            out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nats", action="store_true", help="also run the NATS kill tests")
    args = parser.parse_args()
    python = sys.executable
    rows, results, took = run_probes(python)
    print(f"{time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}; {len(results)} probes in {took:.0f} s: "
          + ", ".join(f"{sum(v == o for v in results.values())} {o}"
                      for o in ("passed", "xfail (bug)", "FAILED", "skipped")
                      if o in results.values()))
    print(table(rows, results))
    unrecorded = sorted(set(results) - {r["test"] for r in rows})
    if unrecorded:
        print("\nProbes that record no figures: " + ", ".join(f"`{t}`" for t in unrecorded))
    if args.nats:
        print("\n**NATS bridge (SIGKILL of nats-server and restart)**\n")
        for line in run_nats(python):
            print(f"- {line}")
    lost = {o: sum(int(r.get("lost_unreported", 0)) for r in rows
                   if results.get(r["test"]) == o) for o in ("passed", "xfail (bug)")}
    print(f"\nLost without a report: {lost['passed']} in the probes that pass, "
          f"{lost['xfail (bug)']} in those that show a known bug (xfail)")


if __name__ == "__main__":
    main()
