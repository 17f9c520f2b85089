"""Reproduction a user can check: the environment fingerprint, seeds as mean +- std, the demo's claims."""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from tool.engine.fingerprint import fingerprint, fingerprint_line  # noqa: E402

KEYS = {"commit", "dirty", "python", "torch", "torchvision", "cuda", "cudnn", "gpus", "cpu", "threads", "precision",
        "deterministic", "processes", "seed", "command"}


def test_the_fingerprint_says_what_ran_and_where():
    fp = fingerprint(precision_used="fp32", processes=1, seed=3, deterministic=False)
    assert set(fp) == KEYS
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    assert fp["commit"] == head and fp["dirty"] == dirty and fp["torch"] == torch.__version__
    assert fp["threads"] == torch.get_num_threads() and fp["seed"] == 3 and fp["gpus"] is None  # the suite is CPU-only
    line = fingerprint_line(fp)
    assert "\n" not in line and head[:10] in line and f"torch {torch.__version__}" in line and "seed 3" in line


def test_training_logs_and_evaluation_jsons_carry_it(tmp_path):
    import evaluation
    import infer_seam
    import train_seam
    from voc12.toy import generate_toy_voc

    toy = tmp_path / "toy"
    generate_toy_voc(str(toy), n_train_aug=4, n_train=2, n_val=1, size=48, seed=0)
    train_seam.main(["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"),
                     "--cls_labels", str(toy / "cls_labels.txt"), "--session_name", str(tmp_path / "seam"),
                     "--width", "0.0625", "--crop_size", "48", "--resize_long", "48", "64", "--batch_size", "4",
                     "--num_workers", "0", "--max_step", "1", "--seed", "7"])
    log = next((tmp_path / "tblog").glob("*.log")).read_text().splitlines()
    first_step = next(i for i, line in enumerate(log) if line.startswith("step "))
    logged = json.loads(next(line for line in log[:first_step] if line.startswith("environment: {"))[13:])
    assert set(logged) == KEYS and logged["seed"] == 7 and logged["precision"] == "fp32" and logged["processes"] == 1
    infer_seam.main(["--weights", str(tmp_path / "seam.pth"), "--voc12_root", str(toy), "--infer_list",
                     str(toy / "train.txt"), "--cls_labels", str(toy / "cls_labels.txt"), "--out_cam",
                     str(tmp_path / "cam"), "--num_workers", "0", "--crf_workers", "0"])
    evaluation.main(["--list", str(toy / "train.txt"), "--predict_dir", str(tmp_path / "cam"), "--gt_dir",
                     str(toy / "SegmentationClass"), "--type", "npz", "--t", "0.3", "--logfile", "",
                     "--out_json", str(tmp_path / "cam.json"), "--num_workers", "1"])
    assert set(json.loads((tmp_path / "cam.json").read_text())["environment"]) == KEYS


def test_deterministic_turns_on_pytorchs_deterministic_algorithms(monkeypatch):
    from tool.engine.runtime import setup_device

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        setup_device("cpu", "off", deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # a warning where an op has none
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def write_results(run, values):
    (run / "results").mkdir(parents=True)
    for name, miou in values.items():
        (run / "results" / f"{name}.json").write_text(json.dumps({"miou": miou, "num_images": 4, "t": None}))


def test_seeds_give_mean_and_std_beside_each_seeds_value(tmp_path):
    import results

    write_results(tmp_path / "seed_0", {"cam": 50.0, "rw": 60.0, "seg": 70.0})
    write_results(tmp_path / "seed_1", {"cam": 54.0, "rw": 61.0, "seg": 66.0})
    results.main([str(tmp_path), "--seeds", "0", "1"])
    table = json.loads((tmp_path / "results.json").read_text())
    rows = {r["stage"]: r for r in table["rows"]}
    assert rows["SEAM CAM"]["miou"] == 52.0 and rows["SEAM CAM"]["std"] == 2.0
    assert rows["SEAM CAM"]["per_seed"] == {"0": 50.0, "1": 54.0} and rows["segmentation (DeepLab)"]["std"] == 2.0
    assert table["seeds"] == [0, 1] and set(table["environment"]) == KEYS
    md = (tmp_path / "results.md").read_text()
    assert "| SEAM CAM | 52.00 +- 2.00 | 50.00 | 54.00 | train |" in md
    assert md.strip().splitlines()[-1].startswith("Environment: commit ")
    with pytest.raises(SystemExit, match="seed_2/results: no evaluation results"):
        results.main([str(tmp_path), "--seeds", "0", "2"])


def test_the_demo_claims_pass_and_fail(tmp_path, capsys):
    import demo_claims

    from voc12.toy import generate_toy_voc

    toy = tmp_path / "toy"
    generate_toy_voc(str(toy), n_train_aug=4, n_train=2, n_val=1, size=48, seed=0)
    (toy / "classes.txt").write_text("\n".join(f"c{i}" for i in range(20)) + "\n")
    floors = {s: demo_claims.all_background_miou(str(toy), s, 21) for s in ("train", "val")}
    assert 0 < floors["train"] < 100 / 21 + 1e-9  # background's IoU over 21 classes at most
    good = tmp_path / "good"
    write_results(good, {"cam_baseline": 40.0, "cam": 45.0, "rw": 50.0, "seg": 46.0})
    assert demo_claims.main([str(good), str(toy), "--strict"]) == 0
    assert capsys.readouterr().out.count("PASS") == 3
    bad = tmp_path / "bad"
    write_results(bad, {"cam_baseline": 45.0, "cam": 40.0, "rw": 50.0, "seg": 44.0})
    assert demo_claims.main([str(bad), str(toy), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  SEAM CAM above the plain-CAM baseline (40.0 vs 45.0)" in out
    assert "FAIL  segmentation >= 0.9x its pseudo labels (44.0 vs 0.9 x 50.0)" in out
    assert "PASS  every row >= 3x all-background" in out and out.strip().splitlines()[-1].startswith("environment: ")
    assert json.loads((bad / "claims.json").read_text())["claims"][0]["pass"] is False
