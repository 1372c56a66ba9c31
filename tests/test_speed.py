"""Speed tooling that must keep working: the step benchmark prints its figures; compilation is recorded apart."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import warnings
from pathlib import Path

import pytest
from conftest import FAST, REPO, run_cli, run_script


@pytest.mark.slow
def test_benchmark_prints_the_three_figures_ratios_and_warm_up_fairness(tmp_path):
    result = run_script("benchmark_step.py", "--quick", cwd=tmp_path)
    number = r"\d+\.\d+ \(\d+\.\d+-\d+\.\d+\)"
    ratio = r"(\d+\.\d\d) \[(\d+\.\d\d)-(\d+\.\d\d)\] too few rounds"  # one round: no interval
    row = re.search(rf"^mlp cpu\s+20\s+({number})\s+({number})\s+({number})\s+{ratio}\s+{ratio}$",
                    result.stdout, re.MULTILINE)  # fmt: skip
    assert row, result.stdout[-3000:]
    assert all(float(row.group(i)) > 0 for i in (4, 7))
    assert row.group(4) == row.group(5) == row.group(6)  # one round: median, low and high are its ratio
    fairness = re.search(
        r"^warm-up fairness, cpu \(1 fresh processes x 2 identical jobs\): .*median over processes (\d+\.\d\d) "
        r"\(each: (\d+\.\d\d)\)$",
        result.stdout,
        re.MULTILINE,
    )
    assert fairness and float(fairness.group(1)) > 0, result.stdout[-3000:]
    assert fairness.group(1) == fairness.group(2)
    # after the table: a run stopped by its time limit keeps the speed rows
    assert fairness.start() > row.start()


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark_step", REPO / "scripts" / "benchmark_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_its_variants_in_alternating_order_and_pairs_them_by_round():
    bench = _benchmark_module()
    calls, times = [], iter([9, 9, 9, 1.0, 2.0, 4.0, 8.0, 4.0, 2.0, 3.0, 3.0, 6.0])

    def variant(i):
        return lambda: calls.append(i) or next(times)

    stats, ratios = bench.measure([variant(0), variant(1), variant(2)], repeats=3)
    assert calls == [0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2]  # untimed, then a b c / c b a / a b c
    # round 2 ran c, b, a: a = 2.0, b = 4.0, c = 8.0
    assert ratios == [[1.0, 1.0, 1.0], [0.5, 0.5, 1.0], [0.25, 0.25, 0.5]]
    assert stats[0] == (2.0, 1.0, 3.0)


def test_the_benchmark_interval_covers_the_median_distribution_free_and_decides_a_goal_only_with_it():
    bench = _benchmark_module()
    nine = [0.97, 1.03, 0.91, 1.00, 0.99, 0.96, 1.08, 0.98, 1.01]
    low, high, coverage = bench.median_interval(nine)
    assert (low, high) == (0.96, 1.03)  # 2nd smallest and 2nd largest
    assert coverage == pytest.approx(1 - 2 * (1 + 9) / 2**9)  # 96.1 %
    assert bench.median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, pytest.approx(1 - 2 / 32))
    assert bench.verdict(low, high, coverage, 0.95) == "met"
    assert bench.verdict(low, high, coverage, 0.97) == "undecided"
    assert bench.verdict(low, high, coverage, 1.05) == "missed"
    four = bench.median_interval([1.0, 1.1, 1.2, 1.3])
    assert four[2] == pytest.approx(0.875) and bench.verdict(*four, 0.5) == "too few rounds"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_compilation_is_recorded_apart_and_charged_on_request(tmp_path, precision):
    """Also under bf16-mixed: the warm-up compiles under the training step's autocast, so training does not
    compile again (it did when the warm-up ran without autocast)."""
    args = [*FAST, "trainer.accelerator=cpu", "trainer.compile=true", "trainer.max_steps=25"]
    args.append(f"trainer.precision={precision}")
    runs = {"apart": [], "charged": ["trainer.charge_compile=true"]}
    for name, extra in runs.items():
        result = run_cli(
            ["trainspeed.train", *args, *extra, f"hydra.run.dir={name}"], cwd=tmp_path, timeout=900
        )
        assert result.returncode == 0, result.stderr[-3000:]
    apart, charged = (json.loads(Path(tmp_path / name / "summary.json").read_text()) for name in runs)
    assert apart["compile_seconds"] > 0 and charged["compile_seconds"] > 0
    assert charged["train_seconds"] >= charged["compile_seconds"]
    # the partial last batch (1257 = 19 x 64 + 41) was compiled before the clock started: no recompilation
    assert "during training" not in (tmp_path / "apart" / "train.log").read_text()


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("--accelerators", "cpu,tpu", "accepted: cpu, gpu"),
        ("--cases", "mlp,vit", "accepted: mlp, cnn, resnet18"),
    ],
)
def test_the_benchmark_refuses_an_unknown_case_or_accelerator_in_one_line(
    monkeypatch, capsys, option, value, accepted
):
    # in this process (the script's main, as `python scripts/benchmark_step.py` runs it): a refusal needs no
    # fresh interpreter, and it must come before any training
    benchmark = _benchmark_module()
    monkeypatch.setattr(sys, "argv", ["benchmark_step.py", option, value])
    for trains in ("measure", "warm_up_fairness"):
        monkeypatch.setattr(benchmark, trains, lambda *a, **k: pytest.fail("trained before refusing"))
    filters, level = list(warnings.filters), logging.getLogger("trainspeed").level
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main()
    assert exit_info.value.code == 2
    # and it changed none of the process's settings (the warnings and log levels later tests rely on)
    assert warnings.filters == filters and logging.getLogger("trainspeed").level == level
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{option} {value}: unknown" in message and accepted in message
