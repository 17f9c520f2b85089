"""Logic of the CUDA code paths that runs on the CPU: validation without cuDNN autotuning, the
bounded pair-index cache, the benchmark in the scripts' memory format."""
import os
import sys
import types

import torch

from network import build_network
from tool.engine.training import TrainingRun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_validation_runs_without_cudnn_autotuning_and_puts_it_back(monkeypatch):
    seen = []
    run = TrainingRun.__new__(TrainingRun)  # only what validate() reads
    run.is_main, run.step, run.max_step, run.device, run.channels_last = True, 3, 3, torch.device("cpu"), False
    run.model = torch.nn.Linear(2, 2)
    run.logger = types.SimpleNamespace(info=lambda msg: None, scalars=lambda step, values: None)
    run.args = types.SimpleNamespace(session_name=os.devnull + "/never", val_interval=1000, amp="off")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr("tool.engine.training.atomic_path", None)  # nothing is written when the score fails

    def score(forward, dataset, data, device):
        seen.append((torch.backends.cudnn.benchmark, run.model.training))
        raise ValueError("stop here")

    try:
        run.validate(score, [], None)
    except ValueError:
        pass
    assert seen == [(False, False)]
    assert torch.backends.cudnn.benchmark is True and run.model.training


def test_the_pair_index_cache_keeps_a_few_grid_sizes():
    net = build_network("aff", width=0.03125).eval()
    for side in range(2, 14):
        net.pair_indices((side, side + 1), torch.device("cpu"))
    assert len(net._pairs) == 8 and ((13, 14), "cpu") in net._pairs and ((2, 3), "cpu") not in net._pairs
    first = net.pair_indices((13, 14), torch.device("cpu"))
    assert net.pair_indices((13, 14), torch.device("cpu")) is first  # a hit is not rebuilt


def test_the_pipeline_benchmark_runs_the_models_in_the_scripts_memory_format(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import bench_pipeline

    formats = []
    real = bench_pipeline.to_device

    def recording(model, device, channels_last):
        formats.append(channels_last)
        return real(model, device, channels_last)

    monkeypatch.setattr(bench_pipeline, "to_device", recording)
    asked = []
    monkeypatch.setattr(bench_pipeline, "channels_last_enabled", lambda device, flag: asked.append(flag) or False)
    monkeypatch.setattr(bench_pipeline, "crf_seconds", lambda *a: None)
    args = types.SimpleNamespace(tiny=True, steps=1, warmup=0, amp="off")
    bench_pipeline.measure(args, torch.device("cpu"))
    # the stage scripts' default (auto: NHWC on CUDA) decides, for every model; on the CPU its
    # answer is NCHW (torch 2.14's CPU backward of DeepLab in NHWC crashes)
    assert asked == ["auto"] and formats == [False, False, False]
