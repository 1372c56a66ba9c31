"""Speed tooling that must keep working: the step benchmark prints its figures; compilation is recorded apart."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, REPO, run_cli, run_script


@pytest.mark.slow
def test_benchmark_prints_the_three_figures_ratios_and_warm_up_fairness(tmp_path):
    result = run_script("benchmark_step.py", "--quick", cwd=tmp_path)
    number = r"\d+\.\d+ \(\d+\.\d+-\d+\.\d+\)"
    row = re.search(rf"^mlp cpu\s+20\s+({number})\s+({number})\s+({number})\s+(\d+\.\d\d)\s+(\d+\.\d\d)$",
                    result.stdout, re.MULTILINE)  # fmt: skip
    assert row, result.stdout[-3000:]
    assert all(float(row.group(i)) > 0 for i in (4, 5))
    fairness = re.search(
        r"^warm-up fairness, cpu \(1 fresh processes x 2 identical jobs\): .*first/later (\d+\.\d\d)$",
        result.stdout,
        re.MULTILINE,
    )
    assert fairness and float(fairness.group(1)) > 0, result.stdout[-3000:]


@pytest.mark.slow
def test_compilation_is_recorded_apart_and_charged_on_request(tmp_path):
    args = [*FAST, "trainer.accelerator=cpu", "trainer.compile=true", "trainer.max_steps=25"]
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
def test_the_benchmark_refuses_an_unknown_case_or_accelerator_in_one_line(tmp_path, option, value, accepted):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark_step.py"), option, value],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert f"{option} {value}: unknown" in message and accepted in message, result.stderr
