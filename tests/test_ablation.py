"""scripts/ablation.sh and its table: the rows, seeds and numbers of the cells' evaluations."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import evaluation
from tool.engine.camfile import save_cam
from tool.engine.files import save_label_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import ablation_table  # noqa: E402


def fake_cell(work, setting, seed, gts, noise):
    """A cell's CAMs (the ground truth blurred by `noise`) scored by evaluation.py, as the runner does."""
    rng = np.random.default_rng(seed)
    cell = work / setting / f"seed_{seed}"
    for name, gt in gts.items():
        keys = np.unique(gt[(gt > 0) & (gt < 255)]) - 1
        cams = np.stack([(gt == k + 1) + noise * rng.random(gt.shape) for k in keys]).astype(np.float32)
        save_cam(cell / "cam" / f"{name}.npz", keys, cams / cams.max())
    evaluation.main(["--list", str(work / "list.txt"), "--gt_dir", str(work / "gt"), "--predict_dir",
                     str(cell / "cam"), "--type", "npz", "--curve", "--logfile", "", "--num_workers", "1",
                     "--out_json", str(cell / "cam.json")])
    with open(cell / "cam.json") as f:
        return json.load(f)["miou"]


def test_the_table_and_plot_hold_every_setting_and_seed(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gts = {}
    for i in range(3):
        gt = np.zeros((20, 24), np.uint8)
        gt[3:12, 4:15] = rng.integers(1, 21)
        gt[14:18, 16:22] = rng.integers(1, 21)
        gt[0, :] = 255
        gts[f"img{i}"] = gt
        save_label_png(tmp_path / "gt" / f"img{i}.png", gt)
    (tmp_path / "list.txt").write_text("\n".join(gts) + "\n")
    mious = {(s, seed): fake_cell(tmp_path, s, seed, gts, noise)
             for s, noise in (("baseline", 1.5), ("seam", 0.3)) for seed in (0, 1)}
    assert ablation_table.main([str(tmp_path), "--settings", "baseline", "seam", "--seeds", "0", "1",
                                "--paper", "seam=55.41", "--title", "toy"]) == 0
    table = (tmp_path / "ablation.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| baseline") or line.startswith("| seam")]
    assert [r.split("|")[1].strip() for r in rows] == ["baseline", "seam"]
    for row, setting in zip(rows, ("baseline", "seam")):
        values = [mious[setting, 0], mious[setting, 1]]
        assert f"{np.mean(values):.2f} +- {np.std(values):.2f}" in row
        assert f"0: {values[0]:.2f}, 1: {values[1]:.2f}" in row
    assert rows[1].rstrip(" |").endswith("55.41") and rows[0].rstrip(" |").endswith("-")
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["setting"] for r in saved["rows"]] == ["baseline", "seam"]
    assert set(saved["rows"][1]["class_iou"]) == {"0", "1"} and len(saved["rows"][1]["class_iou"]["0"]) == 21
    assert saved["rows"][1]["mean"] > saved["rows"][0]["mean"]
    assert Image.open(tmp_path / "ablation.png").size[1] >= 40 + 26 * 2


def test_a_missing_cell_is_one_line_naming_it(tmp_path):
    with pytest.raises(SystemExit, match="seam/seed_3/cam.json: not found"):
        ablation_table.main([str(tmp_path), "--settings", "seam", "--seeds", "3"])


@pytest.mark.parametrize("env, says", [({"SETTINGS": "seam nonsense"}, "no setting nonsense"),
                                       ({"SEEDS": "0 x"}, "x is not a seed"),
                                       ({"ABLATION_DATA": "imagenet"}, "toy or voc")])
def test_the_runner_checks_its_settings_before_any_work(tmp_path, env, says):
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ablation.sh")], capture_output=True, text=True,
                          env={**os.environ, "WORK_DIR": str(tmp_path / "w"), "SEAM_PYTHON": sys.executable, **env},
                          cwd=tmp_path)
    assert done.returncode == 2 and says in done.stderr and not (tmp_path / "w" / "toy").exists()


def test_the_runner_on_a_tiny_grid_writes_each_cell_then_the_table_and_plot(tmp_path):
    work = tmp_path / "w"
    env = {**os.environ, "WORK_DIR": str(work), "SEAM_PYTHON": sys.executable, "SETTINGS": "seam", "SEEDS": "0 1",
           "PRETRAIN": "none", "DEMO_N_TRAIN_AUG": "4", "DEMO_N_TRAIN": "2", "DEMO_N_VAL": "1", "DEMO_SIZE": "32",
           "DEMO_WIDTH": "0.03125", "DEMO_CAM_EPOCHS": "1", "DEMO_BATCH": "2", "DEMO_CLASSES": "2"}
    script = os.path.join(ROOT, "scripts", "ablation.sh")
    done = subprocess.run(["bash", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = {seed: json.loads((work / "seam" / f"seed_{seed}" / "cam.json").read_text())["miou"] for seed in (0, 1)}
    row = next(line for line in (work / "ablation.md").read_text().splitlines() if line.startswith("| seam "))
    assert f"0: {cells[0]:.2f}, 1: {cells[1]:.2f}" in row
    assert f"{np.mean(list(cells.values())):.2f} +- {np.std(list(cells.values())):.2f}" in row
    assert json.loads((work / "ablation.json").read_text())["rows"][0]["per_seed"] == {"0": round(cells[0], 2),
                                                                                      "1": round(cells[1], 2)}
    assert Image.open(work / "ablation.png").size[0] > 0
    again = subprocess.run(["bash", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("done before") == 2  # a finished cell is not run again
