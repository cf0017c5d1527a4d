"""The benchmarks' timing helper (`benchmarks/measure.py`): medians, spreads, interleaving."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "measure.py"
_spec = importlib.util.spec_from_file_location("measure", _PATH)
measure = importlib.util.module_from_spec(_spec)
sys.modules["measure"] = measure
_spec.loader.exec_module(measure)


def test_a_timing_reports_median_interquartile_range_and_best():
    t = measure.Timing((5.0, 1.0, 3.0, 2.0, 4.0))
    assert t.median == 3.0
    assert t.spread == (2.0, 4.0)
    assert t.best == 1.0
    assert t.cell(scale=1.0, unit="s", digits=1) == "3.0 s [2.0-4.0]"


def test_candidates_are_interleaved_in_a_rotating_order_and_each_repeated():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timings = measure.interleaved(candidates, rounds=3)
    assert calls[:3] == ["a", "b", "c"]  # one warm-up call each
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(t.samples) == 3 for t in timings.values())


def test_the_load_line_warns_only_above_the_quiet_threshold(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.3, 0.4))
    assert "WARNING" not in measure.load_line()
    monkeypatch.setattr(os, "getloadavg", lambda: (2.5, 0.3, 0.4))
    line = measure.load_line()
    assert line.startswith("load average 2.50") and "WARNING" in line


def test_each_wait_policy_runs_in_its_own_process_with_the_variable_set_or_unset(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text("import json, os\nprint(json.dumps(os.environ.get('OMP_WAIT_POLICY')))\n")
    results = measure.run_under_wait_policies([str(script)])
    assert results == {"PASSIVE": "PASSIVE", "default": None}


def test_a_failing_worker_is_reported_with_its_error(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text("raise SystemExit('no torch here')\n")
    with pytest.raises(RuntimeError, match="no torch here"):
        measure.run_under_wait_policies([str(script)], policies=("PASSIVE",))
