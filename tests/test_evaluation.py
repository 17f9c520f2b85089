import json
import pickle

import numpy as np
import pytest

import evaluation
from tool.engine.files import save_label_png, save_npz
from tool.metrics import confusion_counts, iou_from_confusion
from voc12.labels import CLASS_NAMES


def write_list(path, ids, published_form=False):
    if published_form:
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]
    else:
        lines = list(ids)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def all_class_gts(rng, n_images=3, shape=(12, 14)):
    """GT maps that together contain all 21 classes and some 255 pixels."""
    gts = []
    for _ in range(n_images):
        gt = rng.integers(0, 21, size=shape).astype(np.uint8)
        gt[0, :] = 255
        gts.append(gt)
    gts[0][1, :] = np.arange(21)[: shape[1]]
    gts[1][1, :7] = np.arange(14, 21)
    return gts


@pytest.fixture
def voc(tmp_path):
    """Three GT maps, random CAMs (npz and pickled npy), and a list."""
    rng = np.random.default_rng(0)
    ids = [f"2007_00000{k}" for k in range(3)]
    gt_dir, cam_dir, npy_dir = tmp_path / "gt", tmp_path / "cam", tmp_path / "npy"
    gts = all_class_gts(rng)
    cams = {}
    for img_id, gt in zip(ids, gts):
        save_label_png(gt_dir / f"{img_id}.png", gt)
        keys = np.sort(rng.choice(20, size=3, replace=False)).astype(np.int64)
        cam = (rng.integers(0, 65, size=(3,) + gt.shape) / 100).astype(np.float32)
        save_npz(cam_dir / f"{img_id}.npz", keys=keys, cams=cam)
        npy_dir.mkdir(exist_ok=True)
        np.save(npy_dir / f"{img_id}.npy", {int(k): c for k, c in zip(keys, cam)}, allow_pickle=True)
        cams[img_id] = (keys, cam)
    return {
        "ids": ids,
        "gts": dict(zip(ids, gts)),
        "cams": cams,
        "gt_dir": str(gt_dir),
        "cam_dir": str(cam_dir),
        "npy_dir": str(npy_dir),
        "list": write_list(tmp_path / "list.txt", ids),
        "log": str(tmp_path / "log.txt"),
        "tmp": tmp_path,
    }


def base_args(voc, predict_dir, *extra):
    return [
        "--list", voc["list"], "--predict_dir", predict_dir, "--gt_dir", voc["gt_dir"],
        "--logfile", voc["log"], "--num_workers", "1", *extra,
    ]


def naive_label(keys, cams, t):
    tensor = np.zeros((21,) + cams.shape[1:], np.float32)
    tensor[keys + 1] = cams
    tensor[0] = t
    return tensor.argmax(0)


def brute_force_curve(voc):
    mious = []
    for t in evaluation.CURVE_THRESHOLDS:
        conf = sum(confusion_counts(naive_label(*voc["cams"][i], t), voc["gts"][i], 21) for i in voc["ids"])
        mious.append(100 * iou_from_confusion(conf).mean())
    return np.array(mious)


def test_gt_against_gt_is_100(voc, capsys):
    result = evaluation.main(base_args(voc, voc["gt_dir"]))
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "mIoU: 100.000"
    assert out[0].startswith("background:100.000 aeroplane:100.000")
    assert out[0].endswith("tvmonitor:100.000 mIoU:100.000")
    assert result["miou"] == pytest.approx(100.0)


def test_hand_computed_iou(tmp_path, capsys):
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 255]], np.uint8)
    save_label_png(tmp_path / "gt" / "a.png", gt)
    save_label_png(tmp_path / "pred" / "a.png", pred)
    lst = write_list(tmp_path / "l.txt", ["a"], published_form=True)
    evaluation.main([
        "--list", lst, "--predict_dir", str(tmp_path / "pred"), "--gt_dir", str(tmp_path / "gt"),
        "--logfile", "",
    ])
    # bg: TP1 T2 P2 -> 1/3; aeroplane: TP2 T2 P3 -> 2/3; bicycle: TP1 T2 P1 -> 1/2; others 0
    expected = 100 * (1 / 3 + 2 / 3 + 1 / 2) / 21
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("background:33.333 aeroplane:66.667 bicycle:50.000 bird:0.000")
    assert out[-1] == f"mIoU: {expected:.3f}"


def test_no_class_prediction_is_wrong_not_ignored(tmp_path, capsys):
    gt = np.array([[1, 1]], np.uint8)
    save_label_png(tmp_path / "gt" / "a.png", gt)
    save_label_png(tmp_path / "pred" / "a.png", np.array([[1, 255]], np.uint8))
    lst = write_list(tmp_path / "l.txt", ["a"])
    result = evaluation.main([
        "--list", lst, "--predict_dir", str(tmp_path / "pred"), "--gt_dir", str(tmp_path / "gt"),
        "--logfile", "",
    ])
    assert result["class_iou"][1] == pytest.approx(50.0)


def test_curve_best_threshold_matches_brute_force(voc, capsys):
    out_json = voc["tmp"] / "res.json"
    args = base_args(voc, voc["cam_dir"], "--type", "npz", "--curve", "--out_json", str(out_json))
    result = evaluation.main(args)
    brute = brute_force_curve(voc)
    best = int(np.argmax(brute))
    assert result["t"] == pytest.approx(best / 100)
    assert result["miou"] == pytest.approx(brute[best], abs=1e-9)
    np.testing.assert_allclose([m for _, m in result["curve"]], brute, atol=1e-9)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 62
    assert lines[0] == f"t=0.00 mIoU={brute[0]:.3f}"
    assert lines[-1] == f"best t={best / 100:.2f} mIoU: {brute[best]:.3f}"
    saved = json.loads(out_json.read_text())
    assert saved["t"] == pytest.approx(best / 100) and len(saved["curve"]) == 60
    assert saved["miou"] == pytest.approx(brute[best])
    assert set(saved["class_iou"]) == set(evaluation.CLASS_NAMES)


def test_the_curve_plot_draws_the_json_values_and_marks_the_best(voc):
    from PIL import Image

    from tool.vis import CURVE_BEST, CURVE_FRAME, CURVE_LINE

    out_json = voc["tmp"] / "cam.json"
    evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve", "--out_json", str(out_json)))
    saved = json.loads(out_json.read_text())
    px = np.asarray(Image.open(voc["tmp"] / "cam.png").convert("RGB")).astype(int)

    def where(colour):
        return np.nonzero((px == colour).all(axis=2))  # rows, columns

    rows, cols = where(CURVE_FRAME)  # the frame bounds the plot area: t from left to right, mIoU bottom to top
    left, right, top, bottom = cols.min(), cols.max(), rows.min(), rows.max()
    ts, ms = [p["t"] for p in saved["curve"]], [p["miou"] for p in saved["curve"]]
    lo, hi = np.floor(min(ms) / 10) * 10, np.ceil(max(ms) / 10) * 10  # the axis: tens around the values

    def expected(t, m):
        return (round(left + (t - ts[0]) / (ts[-1] - ts[0]) * (right - left)),
                round(bottom - (m - lo) / (hi - lo) * (bottom - top)))

    best_x, best_y = expected(saved["t"], saved["miou"])
    for t, m in zip(ts, ms):
        x, y = expected(t, m)
        if abs(x - best_x) > 5:  # the best point's dot covers its neighbours
            near = px[y - 1:y + 2, x - 1:x + 2]
            assert (near == CURVE_LINE).all(axis=2).any(), f"no curve at t={t}, mIoU={m:.2f} ({x}, {y})"
    assert (px[best_y, best_x] == CURVE_BEST).all()  # a dot on the best point
    rows, cols = where(CURVE_BEST)
    assert abs(cols - best_x).max() <= 4  # and a vertical line at the best t, from bottom to top
    line = rows[cols == best_x]
    assert line.min() <= top + 1 and line.max() >= bottom - 1
    assert saved["t"] == ts[int(np.argmax(ms))]


def test_no_plot_without_a_curve_or_with_no_plot(voc):
    for extra in (["--t", "0.3"], ["--curve", "--no_plot"]):
        out_json = str(voc["tmp"] / "r.json")
        evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", *extra, "--out_json", out_json))
        assert (voc["tmp"] / "r.json").exists() and not (voc["tmp"] / "r.png").exists()
    assert evaluation.plot_path("work/results/cam.json") == "work/results/cam.png"


def test_single_threshold_equals_curve_point(voc, capsys):
    curve = evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve"))["curve"]
    single = evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--t", "0.26"))
    assert single["miou"] == pytest.approx(curve[26][1])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"mIoU: {curve[26][1]:.3f}"


def test_log_file_is_appended(voc, capsys):
    evaluation.main(base_args(voc, voc["gt_dir"], "--comment", "first run"))
    evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--t", "0.3", "--comment", "second"))
    log = open(voc["log"]).read()
    assert log.count("=== ") == 2
    assert "comment: first run" in log and "comment: second" in log
    assert "type: npz t: 0.30" in log
    assert log.count("mIoU: ") == 2


def test_npy_needs_allow_pickle(voc, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluation.main(base_args(voc, voc["npy_dir"], "--type", "npy", "--t", "0.2"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--allow_pickle" in err and "\n" not in err


def test_npy_with_allow_pickle_equals_npz(voc):
    npz = evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve"))
    npy = evaluation.main(base_args(voc, voc["npy_dir"], "--type", "npy", "--allow_pickle", "--curve"))
    assert npy["curve"] == npz["curve"]


def test_workers_give_the_same_curve(voc):
    one = evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve"))
    two = evaluation.main(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve") + ["--num_workers", "2"])
    assert one["curve"] == two["curve"]


def test_spawn_start_method(voc):
    source = evaluation.EvalSource(voc["cam_dir"], voc["gt_dir"], "npz", (0.1, 0.3), 21)
    forked = evaluation.evaluate_list(voc["ids"], source, num_workers=1)
    spawned = evaluation.evaluate_list(voc["ids"], source, num_workers=2, start_method="spawn")
    np.testing.assert_array_equal(forked, spawned)


def expect_error(args, capsys, *fragments):
    with pytest.raises(SystemExit) as exc:
        evaluation.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_prediction(voc, capsys, workers):
    missing = voc["tmp"] / "cam" / f"{voc['ids'][1]}.npz"
    missing.unlink()
    expect_error(base_args(voc, voc["cam_dir"], "--type", "npz", "--t", "0.2", "--num_workers", workers),
                 capsys, str(missing), "no such file")


def test_missing_gt(voc, capsys):
    missing = voc["tmp"] / "gt" / f"{voc['ids'][2]}.png"
    pred_dir = voc["tmp"] / "pred"
    for i in voc["ids"]:
        save_label_png(pred_dir / f"{i}.png", voc["gts"][i])
    missing.unlink()
    expect_error(base_args(voc, str(pred_dir)), capsys, str(missing))


def test_size_mismatch(voc, capsys):
    bad = voc["tmp"] / "cam" / f"{voc['ids'][0]}.npz"
    save_npz(bad, keys=np.array([1]), cams=np.zeros((1, 5, 5), np.float32))
    expect_error(base_args(voc, voc["cam_dir"], "--type", "npz", "--t", "0.2"), capsys, str(bad), "size")


def test_png_size_mismatch(voc, capsys):
    pred_dir = voc["tmp"] / "pred"
    for i in voc["ids"]:
        save_label_png(pred_dir / f"{i}.png", voc["gts"][i][:, :5])
    expect_error(base_args(voc, str(pred_dir)), capsys, str(pred_dir / f"{voc['ids'][0]}.png"), "size")


def test_prediction_value_out_of_range(voc, capsys):
    pred_dir = voc["tmp"] / "pred"
    for i in voc["ids"]:
        pred = voc["gts"][i].copy()
        pred[pred == 255] = 0
        save_label_png(pred_dir / f"{i}.png", pred)
    bad = pred_dir / f"{voc['ids'][1]}.png"
    save_label_png(bad, np.full(voc["gts"][voc["ids"][1]].shape, 21, np.uint8))
    expect_error(base_args(voc, str(pred_dir)), capsys, str(bad), "21")


def test_gt_value_out_of_range(voc, capsys):
    bad = voc["tmp"] / "gt" / f"{voc['ids'][0]}.png"
    save_label_png(bad, np.full(voc["gts"][voc["ids"][0]].shape, 40, np.uint8))
    expect_error(base_args(voc, voc["gt_dir"]), capsys, str(bad), "40")


def test_empty_list(voc, capsys):
    empty = voc["tmp"] / "empty.txt"
    empty.write_text("\n")
    expect_error(base_args(voc, voc["gt_dir"])[:-2] + ["--list", str(empty)], capsys, str(empty), "empty")


def test_missing_list(voc, capsys):
    missing = str(voc["tmp"] / "nolist.txt")
    expect_error(base_args(voc, voc["gt_dir"]) + ["--list", missing], capsys, missing)


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"cams": np.zeros((1, 12, 14), np.float32)}, "missing array(s) keys"),
        ({"keys": np.array([1])}, "missing array(s) cams"),
        ({"keys": np.array([20]), "cams": np.zeros((1, 12, 14), np.float32)}, "keys [20] outside 0..19"),
        ({"keys": np.array([1, 2]), "cams": np.zeros((1, 12, 14), np.float32)}, "cams must be"),
    ],
)
def test_bad_npz(voc, capsys, arrays, fragment):
    bad = voc["tmp"] / "cam" / f"{voc['ids'][2]}.npz"
    save_npz(bad, **arrays)
    expect_error(base_args(voc, voc["cam_dir"], "--type", "npz", "--curve"), capsys, str(bad), fragment)


def test_pickled_npz_is_refused(voc, capsys):
    bad = voc["tmp"] / "cam" / f"{voc['ids'][0]}.npz"
    with open(bad, "wb") as f:
        np.savez(f, keys=np.array([1]), cams=np.array([{"x": 1}], dtype=object))
    expect_error(base_args(voc, voc["cam_dir"], "--type", "npz", "--t", "0.1"), capsys, str(bad))


def test_bad_pickled_npy(voc, capsys):
    bad = voc["tmp"] / "npy" / f"{voc['ids'][0]}.npy"
    with open(bad, "wb") as f:
        pickle.dump("not an npy", f)
    expect_error(base_args(voc, voc["npy_dir"], "--type", "npy", "--allow_pickle", "--t", "0.1"),
                 capsys, str(bad))


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--type", "npz"], "--t"),
        (["--type", "npz", "--t", "0.2", "--curve"], "either"),
        (["--curve"], "CAM types"),
        (["--type", "npz", "--t", "-0.1"], "--t must be"),
    ],
)
def test_flag_errors(voc, capsys, extra, fragment):
    expect_error(base_args(voc, voc["cam_dir"], *extra), capsys, fragment)


def test_crf_type_scores_the_argmax_with_background_first(voc, capsys):
    crf_dir = voc["tmp"] / "crf"
    png_dir = voc["tmp"] / "crf_png"
    rng = np.random.default_rng(1)
    for img_id in voc["ids"]:
        fg_keys, cam = voc["cams"][img_id]
        keys = np.concatenate([[0], fg_keys + 1])
        scores = rng.random((len(keys),) + cam.shape[1:]).astype(np.float32)
        save_npz(crf_dir / f"{img_id}.npz", keys=keys, scores=scores)
        save_label_png(png_dir / f"{img_id}.png", keys[scores.argmax(0)].astype(np.uint8))
    got = evaluation.main(base_args(voc, str(crf_dir), "--type", "crf"))
    want = evaluation.main(base_args(voc, str(png_dir), "--type", "png"))
    assert got["miou"] == want["miou"] and 0 < got["miou"] < 100
    save_npz(crf_dir / f"{voc['ids'][0]}.npz", keys=np.array([0, 25]), scores=np.zeros((2, 12, 14), np.float32))
    expect_error(base_args(voc, str(crf_dir), "--type", "crf"), capsys, voc["ids"][0], "outside")


def test_classes_without_ground_truth_are_named_and_mean_present_leaves_them_out(tmp_path, capsys):
    """Perfect predictions of 15 classes (+ background): the published mean counts the 5 absent
    classes as 0 (16/21 = 76.2), --mean present gives 100, and both say which classes are absent."""
    rng = np.random.default_rng(1)
    ids, gt_dir = ["a", "b"], tmp_path / "gt"
    for img_id in ids:
        gt = rng.integers(0, 16, size=(10, 12)).astype(np.uint8)
        gt[0, :] = np.arange(12)
        gt[1, :4] = np.arange(12, 16)
        gt[2, 0] = 255
        save_label_png(gt_dir / f"{img_id}.png", gt)
    lst = write_list(tmp_path / "list.txt", ids)
    args = ["--list", lst, "--predict_dir", str(gt_dir), "--gt_dir", str(gt_dir), "--logfile", "", "--num_workers",
            "1", "--out_json", str(tmp_path / "r.json")]
    names = list(CLASS_NAMES)
    absent = ", ".join(names[16:])
    result = evaluation.main(args)
    out = capsys.readouterr().out
    assert result["miou"] == pytest.approx(100 * 16 / 21)
    assert f"no ground truth in this list for 5 classes, counted as IoU 0 in the mean over all 21 " \
           f"(--mean present leaves them out): {absent}" in out
    assert json.loads((tmp_path / "r.json").read_text())["absent_classes"] == names[16:]
    result = evaluation.main([*args, "--mean", "present"])
    out = capsys.readouterr().out
    assert result["miou"] == pytest.approx(100.0)
    assert f"left out of the mean (--mean present, over 16 classes): {absent}" in out
    assert "\nmIoU: 100.000\n" in out and "mIoU:100.000" in out
    # every class present: no such line, and the two means agree
    full = np.tile(np.arange(21, dtype=np.uint8), (3, 1))
    save_label_png(gt_dir / "c.png", full)
    one = write_list(tmp_path / "c.txt", ["c"])
    both = [evaluation.main([*args, "--list", one, "--mean", mean])["miou"] for mean in ("all", "present")]
    assert both == [pytest.approx(100.0)] * 2 and "no ground truth" not in capsys.readouterr().out
