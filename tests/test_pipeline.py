"""The pipeline as users run it: the shell scripts, end to end on a tiny synthetic set."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, env_extra, *args):
    # settings a developer may have exported would change what the scripts do
    env = {k: v for k, v in os.environ.items() if k not in ("LA_ALPHA", "HA_ALPHA") and not k.startswith("DEMO_")}
    env.update({"SEAM_PYTHON": sys.executable, **env_extra})
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


# DEMO_TINY made smaller still: 8 images (the first 6 for stages 2-5), 4 of them train, 2 val, 48 px,
# width 1/32 (about 50 s instead of 80 on the 2-core developer machine: most of it is the start of
# the two dozen Python processes)
DEMO_SMALL = {"DEMO_N_TRAIN_AUG": "8", "DEMO_N_PSEUDO": "6", "DEMO_N_TRAIN": "4", "DEMO_N_VAL": "2", "DEMO_SIZE": "48",
              "DEMO_WIDTH": "0.03125"}


@pytest.mark.slow
def test_demo_runs_every_stage_through_the_stage_scripts(tmp_path):
    work = tmp_path / "demo"
    done = run_script("demo.sh", {"WORK_DIR": str(work), "DEMO_TINY": "1", **DEMO_SMALL})
    n_train_aug, n_pseudo, n_train, n_val = (int(DEMO_SMALL[f"DEMO_N_{k}"]) for k in ("TRAIN_AUG", "PSEUDO", "TRAIN",
                                                                                       "VAL"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    rows = {r["stage"]: r for r in results["rows"]}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert results["environment"]["commit"] == head and results["environment"]["torch"] == torch.__version__
    assert set(rows) == {"baseline CAM (no ER/ECR/PCM)", "SEAM CAM", "SEAM CAM + CRF",
                         "random walk (pseudo labels)", "segmentation (DeepLab)"}
    assert all(0 <= r["miou"] <= 100 for r in rows.values())
    assert rows["segmentation (DeepLab)"]["split"] == "val" and rows["SEAM CAM"]["images"] == n_train
    md = (work / "results.md").read_text()
    assert "| SEAM CAM |" in md and "| class | baseline CAM (no ER/ECR/PCM) | SEAM CAM | SEAM CAM + CRF |" in md
    assert "| ellipse | " in md and "| arrow | " in md  # each row's per-class IoU, the toy's classes
    for name in ("pretrain.pth", "baseline.pth", "resnet38_SEAM.pth", "resnet38_aff.pth", "resnet38_seg.pth",
                 "demo.png", "baseline.out"):
        assert (work / name).is_file(), name
    # stages 2-5 on the first 6 of the 8 train_aug images; the classifiers on all 8
    assert len((work / "toy" / "train_aug.txt").read_text().split()) == n_train_aug
    pseudo = (work / "toy" / "train_aug.txt").read_text().split()[:n_pseudo]
    assert (work / "pseudo.txt").read_text().split() == pseudo
    assert sorted(os.listdir(work / "cam")) == sorted(f"{n}.npz" for n in pseudo)
    assert sorted(os.listdir(work / "rw")) == sorted(f"{n}.png" for n in pseudo)
    # the demo's CRF powers reach infer_seam.py, eval_cam.sh and train_aff.sh through LA_ALPHA / HA_ALPHA
    assert len(os.listdir(work / "crf_0.5")) == n_pseudo and len(os.listdir(work / "crf_2.0")) == n_pseudo
    assert not (work / "crf_4.0").exists() and rows["SEAM CAM + CRF"]["source"] in ("crf_0.5", "crf_2.0")
    aff_log = next((work / "tblog").glob("*resnet38_aff.log")).read_text()
    assert f"la_crf_dir: {work / 'crf_0.5'}" in aff_log and f"ha_crf_dir: {work / 'crf_2.0'}" in aff_log
    assert len(os.listdir(work / "seg")) == n_val + min(4, n_train)  # val, and the figure's train images
    (work / "results" / "crf_4.0.json").write_text('{"miou": 99.0}')  # an older run's powers: not this table's
    table = subprocess.run([sys.executable, "scripts/results.py", str(work), "--crf_alphas", "0.5", "2"], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    crf_row = next(line for line in table.stdout.splitlines() if line.startswith("| SEAM CAM + CRF |"))
    assert table.returncode == 0 and "99.00" not in crf_row and crf_row.endswith(("| crf_0.5 |", "| crf_2.0 |"))
    # every command is printed; a training stage run again skips its finished session (the demo
    # reruns nothing else that trains, so one stage script stands for the four)
    assert f"+ {os.path.basename(sys.executable)} train_seam.py" in done.stderr  # the stage scripts echo their command
    toy = work / "toy"
    assert (toy / "classes.txt").read_text().split() == ["ellipse", "ring", "hexagon", "L_shape", "x", "arrow"]
    assert "[demo] stage 1: train SEAM (baseline beside it)" in done.stdout
    reference = json.loads(next(line for line in done.stdout.splitlines() if '"walk_gt_affinity_miou"' in line))
    assert reference["images"] == n_train  # the train list, scored from the demo's own CAMs
    assert 0 < reference["walk_gt_affinity_miou"] <= 100 and 0 < reference["pooled_cam_miou"] <= 100
    assert "initialised from" in (work / "baseline.out").read_text()  # the baseline starts from stage 0 too
    env = {"WORK_DIR": str(work), "DATASET": "folder", "DATA_ROOT": str(toy)}
    for stage, session in (("train_seam", "resnet38_SEAM"), ("train_seg", "resnet38_seg")):
        before = (work / f"{session}.pth").stat().st_mtime_ns
        again = run_script(f"{stage}.sh", env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stderr.strip().endswith(f"{session}.pth exists: skipping {stage}.py")
        assert (work / f"{session}.pth").stat().st_mtime_ns == before


def test_run_voc_checks_its_arguments(tmp_path):
    done = run_script("run_voc.sh", {})
    assert done.returncode == 2 and "usage: bash scripts/run_voc.sh" in done.stderr
    done = run_script("run_voc.sh", {}, str(tmp_path / "nowhere"), str(tmp_path / "w.params"), str(tmp_path / "w"))
    assert done.returncode == 2 and done.stderr.strip() == f"error: {tmp_path / 'nowhere'}/JPEGImages not found"


def test_stage_scripts_need_the_voc_root(tmp_path):
    env = {"WORK_DIR": str(tmp_path), "VOC12_ROOT": ""}
    for script in ("train_seam.sh", "infer_seam.sh", "eval_cam.sh", "train_aff.sh", "infer_aff.sh",
                   "eval_rw.sh", "train_seg.sh", "infer_seg.sh", "eval_seg.sh"):
        done = run_script(script, env)
        assert done.returncode == 2 and done.stderr.startswith("error: set VOC12_ROOT"), script


def test_demo_checks_its_settings_before_any_work(tmp_path):
    done = run_script("demo.sh", {"WORK_DIR": str(tmp_path / "w"), "DEMO_TINY": "1", "DEMO_N_PSEUDO": "5"})
    assert done.returncode == 2 and not (tmp_path / "w").exists()
    assert done.stderr.strip() == "error: DEMO_N_PSEUDO=5 must be a number of images >= DEMO_N_TRAIN (6)"
    (tmp_path / "old" / "toy").mkdir(parents=True)  # an older demo's folder: no settings stamp
    done = run_script("demo.sh", {"WORK_DIR": str(tmp_path / "old"), "DEMO_TINY": "1"})
    assert done.returncode == 2 and "holds a demo run of other settings or an older demo" in done.stderr
    assert os.listdir(tmp_path / "old") == ["toy"]
    done = run_script("demo.sh", {"WORK_DIR": str(tmp_path / "w"), "DEMO_TINY": "1", "DEMO_LA_ALPHA": "3"})
    assert done.returncode == 2 and done.stderr.strip().endswith(
        "error: LA_ALPHA=3 must be below HA_ALPHA=2 (low power: confident foreground)")
    assert not (tmp_path / "w" / "toy").exists()


def test_crf_powers_are_checked_before_anything_runs(tmp_path):
    env = {"WORK_DIR": str(tmp_path), "VOC12_ROOT": str(tmp_path), "HA_ALPHA": ""}
    for powers, error in ((("low", ""), "LA_ALPHA=low: give a positive number"),
                          (("4", "inf"), "HA_ALPHA=inf: give a positive number"),
                          (("24", "4"), "LA_ALPHA=24 must be below HA_ALPHA=4 (low power: confident foreground)")):
        for script in ("infer_seam.sh", "train_aff.sh", "eval_cam.sh"):
            done = run_script(script, {**env, "LA_ALPHA": powers[0], "HA_ALPHA": powers[1]})
            assert done.returncode == 2 and done.stderr.strip() == f"error: {error}", (script, powers)


def test_gpu_check_python_snippets_import_what_exists():
    """scripts/gpu_check.sh runs only on a GPU machine: at least its inline Python must import here."""
    text = open(os.path.join(ROOT, "scripts", "gpu_check.sh")).read()
    snippets = re.findall(r"<<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert len(snippets) == 3
    imports = "\n".join(line for code in snippets for line in code.splitlines()
                        if line.startswith(("import ", "from ")))
    exec(compile(imports, "gpu_check.sh", "exec"), {})  # an ImportError names what is missing


def gpu_check_steps():
    """The step table in gpu_check.sh's header: {name: (budget, in --quick)}."""
    text = open(os.path.join(ROOT, "scripts", "gpu_check.sh")).read()
    table = text[text.index('STEPS="') + 7 : text.index('"', text.index('STEPS="') + 7)]
    return {row.split()[0]: (int(row.split()[1]), row.split()[2] == "y") for row in table.splitlines() if row.strip()}


def test_gpu_check_without_cuda_lists_its_steps_within_the_budget(tmp_path):
    steps = gpu_check_steps()
    env = {"CUDA_VISIBLE_DEVICES": ""}
    for mode, limit in (([], 360), (["--quick"], 180)):
        done = run_script("gpu_check.sh", env, *mode, str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].startswith("gpu_check.sh: no CUDA device here") and f"within {limit} s" in lines[0]
        listed = {line.split()[0]: int(line.split()[1]) for line in lines[1:-1]}
        expected = {name: budget for name, (budget, quick) in steps.items() if quick or not mode}
        assert listed == expected and list(listed) == list(expected)  # in the table's order
        assert lines[-1].split()[-2] == str(sum(expected.values())) and sum(expected.values()) <= limit
        assert not (tmp_path / "out").exists()  # nothing written without a GPU
    done = run_script("gpu_check.sh", env, "--quik")  # a mistyped option is not an output folder
    assert done.returncode == 2 and done.stderr.startswith("error: gpu_check.sh: unknown option --quik")
    # the docs give the same steps and budgets
    docs = open(os.path.join(ROOT, "docs", "performance.md")).read()
    documented = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", docs, re.M))
    assert {name: int(b) for name, b in documented.items()} == {name: b for name, (b, _) in steps.items()}


def test_stage_scripts_take_another_data_set(tmp_path):
    """DATASET/DATA_ROOT through the stage scripts: default lists and labels come from the data set.
    (eval_cam.sh's CRF evaluations are left out here: the demo runs them through the scripts, and
    tests/test_datasets.py scores CRF maps of this data set.)"""
    pytest.importorskip("pycocotools")
    from voc12.make_coco import build
    from voc12.toy import generate_toy_coco

    coco, work = tmp_path / "coco", tmp_path / "work"
    generate_toy_coco(str(coco), n_train=5, n_val=2, size=64, seed=0)
    build(str(coco))
    env = {"WORK_DIR": str(work), "DATASET": "coco14", "DATA_ROOT": str(coco), "VOC12_ROOT": "",
           "IMAGENET_PARAMS": "none"}
    small = ["--width", "0.0625", "--num_workers", "0", "--batch_size", "2", "--crop_size", "64", "--max_step", "1"]
    for script, args in (("train_seam.sh", [*small, "--resize_long", "64", "80"]),
                         ("infer_seam.sh", ["--num_workers", "0", "--crf_workers", "0"]),
                         ("eval_cam.sh", ["--num_workers", "1"])):
        done = run_script(script, {**env, "SKIP_CRF_EVAL": "1"}, *args)
        assert done.returncode == 0, script + done.stderr[-3000:]
    result = json.loads((work / "results" / "cam.json").read_text())
    train_ids = (coco / "train.txt").read_text().split()
    assert result["num_images"] == len(train_ids) == 5 and len(result["class_iou"]) == 81
    assert "traffic_light" in result["class_iou"]
    assert sorted(os.listdir(work / "crf_24.0")) == sorted(f"{i}.npz" for i in train_ids)


@pytest.mark.parametrize("runner", ["run_voc.sh", "run_coco.sh"])
def test_whole_runs_pass_train_infer_and_eval_flags_to_every_stage(tmp_path, runner):
    # an interpreter that logs every stage script's command instead of running it, names a list for
    # `-m voc12.dataset` and runs the `-c` helpers
    log, fake = tmp_path / "calls.txt", tmp_path / "python"
    fake.write_text(f'#!/bin/bash\ncase "$1" in -c) exec {sys.executable} "$@";; -m) echo list.txt; exit;; esac\n'
                    f'echo "$*" >> {log}\n')
    fake.chmod(0o755)
    root = tmp_path / "data"
    for folder in ("JPEGImages", "SegmentationClass", "train2014", "val2014", "annotations"):
        (root / folder).mkdir(parents=True)
    for name in ("annotations/instances_train2014.json", "annotations/instances_val2014.json", "cls_labels.txt",
                 "train.txt", "val.txt"):
        (root / name).write_text("")
    (root / "classes.txt").write_text("person\n")
    flags = {"TRAIN_FLAGS": "--amp off --seed 3", "INFER_FLAGS": "--num_workers 3", "EVAL_FLAGS": "--num_workers 1"}
    done = run_script(runner, {"SEAM_PYTHON": str(fake), **flags}, str(root), "none", str(tmp_path / "work"))
    assert done.returncode == 0, done.stderr[-3000:]
    calls = {line.split()[0].rsplit("/", 1)[-1]: line for line in log.read_text().splitlines()}
    for script, kind in (("train_seam.py", "TRAIN"), ("train_aff.py", "TRAIN"), ("train_seg.py", "TRAIN"),
                         ("infer_seam.py", "INFER"), ("infer_aff.py", "INFER"), ("infer_seg.py", "INFER"),
                         ("evaluation.py", "EVAL")):
        assert calls[script].endswith(" " + flags[f"{kind}_FLAGS"]), calls[script]


def test_run_coco_checks_its_arguments(tmp_path):
    done = run_script("run_coco.sh", {})
    assert done.returncode == 2 and "usage: bash scripts/run_coco.sh" in done.stderr
    done = run_script("run_coco.sh", {}, str(tmp_path), str(tmp_path / "w.params"))
    want = f"error: {tmp_path}/annotations/instances_train2014.json not found"
    assert done.returncode == 2 and done.stderr.strip() == want


def test_reproduce_released_scores_three_checkpoints_and_says_pass_or_fail(tmp_path):
    import train_aff
    import train_seam
    import train_seg
    from voc12.toy import generate_toy_voc

    toy, weights, work = tmp_path / "toy", tmp_path / "weights", tmp_path / "work"
    generate_toy_voc(str(toy), n_train_aug=4, n_train=2, n_val=1, size=32, seed=0)
    done = run_script("reproduce_released.sh", {}, str(toy), str(weights), str(work))
    names = ["resnet38_SEAM.pth", "resnet38_aff_SEAM.pth", "deeplabv1_resnet38_VOCDataset_itr20000_all_64.754.pth"]
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: {weights / n} not found" for n in names]
    assert not work.exists()  # nothing done before the check
    # stand-ins for the released files: one step of each stage, slim
    small = ["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--width",
             "0.0625", "--crop_size", "32", "--batch_size", "4", "--num_workers", "0", "--max_step", "1",
             "--tblog_dir", str(tmp_path / "tb")]
    train_seam.main([*small, "--cls_labels", str(toy / "cls_labels.txt"), "--resize_long", "32", "48",
                     "--session_name", str(weights / "resnet38_SEAM")])
    crf = tmp_path / "crf"
    for folder in ("la", "ha"):  # AffinityNet's training maps: the ground truth as CRF scores is enough here
        for name in (toy / "train_aug.txt").read_text().split():
            from tool.engine.camfile import save_crf
            from tool.vis import load_label_png

            gt = load_label_png(toy / "SegmentationClassAug" / f"{name}.png")
            keys = np.unique(gt[gt < 255]).astype(np.int64)
            save_crf(str(crf / folder / f"{name}.npz"), keys, (gt[None] == keys[:, None, None]).astype(np.float32))
    train_aff.main([*small, "--la_crf_dir", str(crf / "la"), "--ha_crf_dir", str(crf / "ha"),
                    "--session_name", str(weights / "resnet38_aff_SEAM")])
    train_seg.main([*small, "--session_name", str(weights / "deeplabv1_resnet38_VOCDataset_itr20000_all_64.754")])

    env = {"EXPECTED_CAM": "0", "EXPECTED_RW": "0", "EXPECTED_SEG": "0", "TOLERANCE": "100",
           "TRAIN_LIST": str(toy / "train.txt"), "VAL_LIST": str(toy / "val.txt"),
           "CLS_LABELS": str(toy / "cls_labels.txt"), "INFER_FLAGS": "--num_workers 0 --crf_workers 0",
           "EVAL_FLAGS": "--num_workers 1"}
    done = run_script("reproduce_released.sh", env, str(toy), str(weights), str(work))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((work / "reproduce.json").read_text())
    measured = {k: json.loads((work / "results" / f"{k}.json").read_text())["miou"] for k in ("cam", "rw", "seg")}
    assert [r["measured"] for r in report["rows"]] == [measured[k] for k in ("cam", "rw", "seg")]
    assert all(r["pass"] for r in report["rows"]) and "| PASS |" in (work / "reproduce.md").read_text()
    assert report["environment"]["precision"] == "fp32 (--amp off)"
    # the same measurements against figures 1 point off, at a tolerance of 0.5: every stage fails
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import reproduce_table

    expected = [f"{k}={measured[k] + 1}" for k in ("cam", "rw", "seg")]
    assert reproduce_table.main([str(work), "--tolerance", "0.5", "--expected", *expected]) == 1
    table = (work / "reproduce.md").read_text()
    assert table.count("| FAIL |") == 3 and "-1.00 |" in table
    # and within it, every stage passes
    assert reproduce_table.main([str(work), "--tolerance", "1.01", "--expected", *expected]) == 0
