"""Reproduction a user can check: the environment fingerprint, seeds as mean +- std, the demo's claims."""
import json
import os
import subprocess
import sys

import numpy as np
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


def test_the_fingerprint_reads_torchvisions_version_without_importing_it():
    import torchvision

    code = ("import sys; from tool.engine.fingerprint import fingerprint; v = fingerprint()['torchvision']; "
            "print(v, 'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [torchvision.__version__, "False"]  # the local label (+cu130) included


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
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic  # no autotuning
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def write_results(run, values, class_iou=None):
    (run / "results").mkdir(parents=True)
    for name, miou in values.items():
        saved = {"miou": miou, "num_images": 4, "t": None, **({"class_iou": class_iou[name]} if class_iou else {})}
        (run / "results" / f"{name}.json").write_text(json.dumps(saved))


def test_seeds_give_mean_and_std_beside_each_seeds_value(tmp_path):
    import results

    write_results(tmp_path / "seed_0", {"cam": 50.0, "rw": 60.0, "seg": 70.0},
                  {k: {"background": 80.0, "cat": v} for k, v in (("cam", 20.0), ("rw", 40.0), ("seg", 60.0))})
    write_results(tmp_path / "seed_1", {"cam": 54.0, "rw": 61.0, "seg": 66.0},
                  {k: {"background": 82.0, "cat": v} for k, v in (("cam", 28.0), ("rw", 42.0), ("seg", 50.0))})
    results.main([str(tmp_path), "--seeds", "0", "1"])
    table = json.loads((tmp_path / "results.json").read_text())
    rows = {r["stage"]: r for r in table["rows"]}
    assert rows["SEAM CAM"]["miou"] == 52.0 and rows["SEAM CAM"]["std"] == 2.0
    assert rows["SEAM CAM"]["per_seed"] == {"0": 50.0, "1": 54.0} and rows["segmentation (DeepLab)"]["std"] == 2.0
    assert table["seeds"] == [0, 1] and set(table["environment"]) == KEYS
    md = (tmp_path / "results.md").read_text()
    assert "| SEAM CAM | 52.00 +- 2.00 | 50.00 | 54.00 | train |" in md
    assert "Per-class IoU (%) (mean over the seeds):" in md  # each class's mean over the seeds, per row
    assert "| class | SEAM CAM | random walk (pseudo labels) | segmentation (DeepLab) |" in md
    assert "| background | 81.00 | 81.00 | 81.00 |" in md and "| cat | 24.00 | 41.00 | 55.00 |" in md
    assert md.strip().splitlines()[-1].startswith("Environment: commit ")
    with pytest.raises(SystemExit, match="seed_2/results: no evaluation results"):
        results.main([str(tmp_path), "--seeds", "0", "2"])


def test_results_md_gives_each_rows_per_class_iou_from_the_evaluation_jsons(tmp_path):
    import results

    import evaluation
    from tool.engine.files import save_label_png
    from tool.vis import load_label_png
    from voc12.toy import generate_toy_voc

    toy = tmp_path / "toy"
    generate_toy_voc(str(toy), n_train_aug=4, n_train=3, n_val=2, size=40, seed=0)
    work = tmp_path / "work"
    for name, split, wrong in (("rw", "train", 0.2), ("seg", "val", 0.5)):  # labels with a share of pixels wrong
        rng = np.random.default_rng(len(name))
        for img_id in (toy / f"{split}.txt").read_text().split():
            label = load_label_png(str(toy / "SegmentationClass" / f"{img_id}.png"))
            label[rng.random(label.shape) < wrong] = 0
            save_label_png(str(work / name / f"{img_id}.png"), np.where(label == 255, 0, label).astype(np.uint8))
        evaluation.main(["--list", str(toy / f"{split}.txt"), "--predict_dir", str(work / name), "--gt_dir",
                         str(toy / "SegmentationClass"), "--logfile", "", "--num_workers", "1",
                         "--out_json", str(work / "results" / f"{name}.json")])
    results.main([str(work)])
    md = (work / "results.md").read_text().splitlines()
    saved = {n: json.loads((work / "results" / f"{n}.json").read_text())["class_iou"] for n in ("rw", "seg")}
    head = md.index("| class | random walk (pseudo labels) | segmentation (DeepLab) |")
    table = md[head + 2:head + 2 + len(saved["rw"])]
    assert [line.split(" | ")[0] for line in table] == [f"| {c}" for c in saved["rw"]]  # a line per class, in order
    absent = {n: set(json.loads((work / "results" / f"{n}.json").read_text())["absent_classes"]) for n in saved}
    assert absent["rw"] and absent["seg"] and absent["rw"] != absent["seg"]  # the toy lists miss some classes

    def cell(name, c):
        return "-" if c in absent[name] else f"{saved[name][c]:.2f}"

    for line, c in zip(table, saved["rw"]):
        assert line == f"| {c} | {cell('rw', c)} | {cell('seg', c)} |"
    assert len({line.split(" | ")[1] for line in table}) > 2  # the classes differ: not one value copied
    assert "-: the row's list has no ground truth of that class (its mean counts it as 0)." in md
    rows = json.loads((work / "results.json").read_text())["rows"]
    seg = rows[1]["class_iou"]
    assert seg == {c: None if c in absent["seg"] else pytest.approx(v) for c, v in saved["seg"].items()}


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
