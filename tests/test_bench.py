"""The pipeline projection's arithmetic (scripts/bench_pipeline.py); speed itself is measured by
the benchmarks, never here."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import bench_pipeline  # noqa: E402


def test_projection_is_rate_times_work_with_stage_2_and_val_overlapped():
    per_unit = {"1 train SEAM": 0.5, "2 CAMs": 0.1, "2 CRF (2 powers)": 0.9, "3 train AffinityNet": 0.25,
                "4 walk": 0.02, "5 train DeepLab": 0.4, "5 segment val": 0.3, "5 CRF of val": 0.2}
    rows, total = bench_pipeline.project(per_unit, crf_cores=3)
    by = {r["stage"]: r for r in rows}
    assert by["1 train SEAM"]["projected_s"] == pytest.approx(0.5 * 10576)
    assert by["2 CRF (2 powers)"]["projected_s"] == pytest.approx(0.9 * 10582 / 3)  # spread over the processes
    assert by["5 train DeepLab"]["projected_s"] == pytest.approx(0.4 * 20000)
    stage2 = max(0.1 * 10582, 0.9 * 10582 / 3)  # the CRF runs beside the CAMs
    val = max(0.3 * 1449, 0.2 * 1449 / 3)
    assert total == pytest.approx(0.5 * 10576 + stage2 + 0.25 * 10576 + 0.02 * 10582 + 0.4 * 20000 + val)
    rows, _ = bench_pipeline.project({**per_unit, "2 CRF (2 powers)": None}, crf_cores=3)  # no pydensecrf
    assert {r["stage"]: r for r in rows}["2 CRF (2 powers)"]["projected_s"] is None


def test_tiny_run_prints_a_line_per_stage_and_the_total(capsys):
    bench_pipeline.main(["--device", "cpu", "--tiny", "--crf_cores", "2"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    stages = [line["stage"] for line in lines]
    assert stages == [*bench_pipeline.WORK, "total"]
    rows = lines[:-1]
    assert all(r["seconds_per_unit"] is None or r["seconds_per_unit"] > 0 for r in rows)
    _, total = bench_pipeline.project({r["stage"]: r["seconds_per_unit"] for r in rows}, crf_cores=2)
    assert lines[-1]["projected_s"] == pytest.approx(total) and lines[-1]["environment"]["commit"]
