"""The chaos runner's pure parts: the fault schedule and the conservation judge."""

from __future__ import annotations

import random

from chaos.explain import explain, kept_runs
from chaos.judge import judge, violations
from chaos.scenarios import SCENARIOS, Bounds, LokiFault, Scenario
from chaos.schedule import CrashActor, KillProcess, LokiBegin, LokiEnd, build_schedule, spread


def test_faults_are_spread_one_per_slot_over_the_run() -> None:
    moments = spread(100, 1.0, 31.0, random.Random(1))
    assert len(moments) == 100 and moments == sorted(moments)
    for i, at in enumerate(moments):
        assert 1.0 + i * 0.3 <= at < 1.0 + (i + 1) * 0.3
    assert spread(0, 0, 10, random.Random(1)) == []


def test_a_schedule_holds_every_fault_of_its_scenario_in_time_order() -> None:
    scenario = Scenario("t", "", duration_s=20, crashes=10, process_kills=2,
                        crash_groups=("sinks",),
                        loki_faults=(LokiFault("refused", 0.5, 3),))
    events = build_schedule(scenario, random.Random(7))
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    crashes = [e.fault for e in events if isinstance(e.fault, CrashActor)]
    assert len(crashes) == 10 and all(c.groups == ("sinks",) for c in crashes)
    assert sum(isinstance(e.fault, KillProcess) for e in events) == 2
    begin = next(e for e in events if isinstance(e.fault, LokiBegin))
    end = next(e for e in events if isinstance(e.fault, LokiEnd))
    assert begin.at_s == 10 and end.at_s == 13
    assert all(e.at_s >= 1.0 for e in events)


def test_named_crashes_take_the_actors_in_turn() -> None:
    scenario = Scenario("t", "", crashes=4, crash_actors=("root/sinks/loki", "root/sources"))
    actors = [e.fault.actor for e in build_schedule(scenario, random.Random(1))
              if isinstance(e.fault, CrashActor)]
    assert actors == ["root/sinks/loki", "root/sources", "root/sinks/loki", "root/sources"]


def test_every_named_scenario_builds_a_schedule() -> None:
    for scenario in SCENARIOS.values():
        build_schedule(scenario, random.Random(0))


def test_lines_kept_once_in_order_pass() -> None:
    result = judge(4, {"a": ([10, 11], [0, 2]), "b": ([10, 12], [1, 3])})
    assert (result.missing, result.duplicates_kept, result.order_breaks) == (0, 0, 0)
    assert violations(result, Bounds()) == []


def test_a_resend_with_its_original_timestamp_is_absorbed_as_loki_absorbs_it() -> None:
    result = judge(2, {"a": ([10, 11, 10, 11], [0, 1, 0, 1])})
    assert result.duplicates_sent == 2 and result.duplicates_kept == 0
    assert violations(result, Bounds()) == []


def test_a_re_read_with_a_new_timestamp_is_a_kept_duplicate() -> None:
    result = judge(2, {"a": ([10, 11, 20], [0, 1, 0])})
    assert result.duplicates_kept == 1 and result.order_breaks == 0
    assert "1 duplicates kept" in violations(result, Bounds())[0]


def test_missing_lines_and_lines_out_of_order_are_reported() -> None:
    result = judge(5, {"a": ([10, 11, 12], [0, 3, 2])})
    assert result.missing == 2 and result.first_missing == (1, 4)
    assert result.order_breaks == 1
    problems = violations(result, Bounds())
    assert any("2 lines missing" in p for p in problems)
    assert any("1 lines out of order" in p for p in problems)


def test_numbers_never_written_are_reported() -> None:
    result = judge(1, {"a": ([10, 11], [0, 7])})
    assert result.unexpected == 1
    assert any("never written" in p for p in violations(result, Bounds()))


def test_explain_puts_each_run_kept_twice_beside_the_crashes_before_its_second_read() -> None:
    s = 1_000_000_000  # ns
    base = 1_800_000_000
    # stream a: 0..3 read once at base+1; 2..3 read again at base+5 (a crash at base+4.8)
    # stream b: 10 read at base+2 and again at base+20 (no crash before)
    arrivals = {
        "a": ([(base + 1) * s] * 4 + [(base + 5) * s] * 2, [0, 1, 2, 3, 2, 3]),
        "b": ([(base + 2) * s, (base + 20) * s, (base + 2) * s], [10, 10, 11]),
    }
    crashes = [(base + 0.5, "root/sinks/loki"), (base + 4.8, "root/sources/app")]
    runs = kept_runs(arrivals)
    assert [(r.first, r.last, r.count) for r in runs] == [(2, 3, 2), (10, 10, 1)]
    lines = explain(arrivals, crashes)
    assert lines[0] == ("kept twice: 2 numbers in 2..3, read at 0.50s and 4.50s; crashes in "
                        "the 3s before: 4.30s root/sources/app")
    assert lines[1].endswith("crashes in the 3s before: none")
    assert explain({"a": ([s, s], [1, 2])}, crashes) == []
