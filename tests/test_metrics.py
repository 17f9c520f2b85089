import numpy as np
import pytest

from tool.metrics import cam_threshold_confusions, confusion_counts, iou_from_confusion, miou


def naive_cam_label(cams, keys, t, num_classes=21):
    """The published rule written out: constant background plane first, argmax, channel -> class."""
    tensor = np.zeros((num_classes,) + cams.shape[1:], np.float32)
    for key, cam in zip(keys, cams):
        tensor[key + 1] = cam
    tensor[0] = t
    return tensor.argmax(axis=0)


def test_confusion_counts_hand_made():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    conf = confusion_counts(pred, gt, num_classes=3)
    assert conf.shape == (3, 4)
    expected = np.zeros((3, 4), np.int64)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 1
    expected[1, 2] = 1
    expected[2, 2] = 1
    np.testing.assert_array_equal(conf, expected)
    # class 0: TP 1, T 2, P 1 -> 1/2; class 1: TP 1, T 2, P 2 -> 1/3; class 2: TP 1, T 1, P 2 -> 1/2
    np.testing.assert_allclose(iou_from_confusion(conf), [1 / 2, 1 / 3, 1 / 2], rtol=1e-9)
    assert miou(conf) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)


def test_ignore_pixels_drop_their_predictions():
    gt = np.array([255, 255, 1])
    pred = np.array([1, 0, 1])
    conf = confusion_counts(pred, gt, num_classes=2)
    assert conf.sum() == 1
    np.testing.assert_allclose(iou_from_confusion(conf), [0.0, 1.0])


def test_no_class_prediction_counts_as_wrong():
    gt = np.array([1, 1, 0, 0])
    pred = np.array([1, 255, 0, 0])
    iou = iou_from_confusion(confusion_counts(pred, gt, num_classes=2))
    np.testing.assert_allclose(iou, [1.0, 0.5])


def test_absent_classes_count_as_zero_in_the_mean():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2] = 3
    conf = confusion_counts(gt, gt, num_classes=21)
    iou = iou_from_confusion(conf)
    assert iou[0] == pytest.approx(1.0) and iou[3] == pytest.approx(1.0)
    assert miou(conf) == pytest.approx(2 / 21)


def test_accumulation_is_dataset_level_not_per_image():
    # image 1: class 1 perfect on 1 pixel; image 2: class 1 on 3 GT pixels, 1 found
    conf = confusion_counts(np.array([1]), np.array([1]), 2) + confusion_counts(
        np.array([1, 0, 0]), np.array([1, 1, 1]), 2
    )
    assert iou_from_confusion(conf)[1] == pytest.approx(2 / 4)  # per-image mean would be (1 + 1/3) / 2


@pytest.mark.parametrize(
    "pred, gt",
    [(np.array([21]), np.array([0])), (np.array([0]), np.array([21])), (np.array([-1]), np.array([0]))],
)
def test_out_of_range_values_raise(pred, gt):
    with pytest.raises(ValueError, match="outside"):
        confusion_counts(pred, gt, 21)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(np.zeros((2, 3)), np.zeros((3, 2)), 21)


def test_cam_curve_ties_background_wins_and_lowest_class_wins():
    keys = np.array([4, 1])  # deliberately unsorted
    cams = np.array(
        [
            [[0.5, 0.3, 0.26]],  # class 5
            [[0.5, 0.2, 0.10]],  # class 2
        ],
        np.float32,
    )
    gt = np.array([[2, 5, 0]])
    conf = cam_threshold_confusions(cams, keys, gt, [0.26, 0.5], 21)
    # t=0.26: pixel 0 ties 2 vs 5 at 0.5 -> class 2 (lower id); pixel 1 -> 5; pixel 2 ties bg -> 0
    assert conf[0, 2, 2] == 1 and conf[0, 5, 5] == 1 and conf[0, 0, 0] == 1
    # t=0.5: pixel 0 ties with background -> 0
    assert conf[1, 2, 0] == 1 and conf[1, 5, 0] == 1 and conf[1, 0, 0] == 1
    for j, t in enumerate([0.26, 0.5]):
        np.testing.assert_array_equal(conf[j], confusion_counts(naive_cam_label(cams, keys, t), gt, 21))


def test_cam_curve_no_foreground_classes_is_all_background():
    gt = np.array([[0, 3, 255]])
    conf = cam_threshold_confusions(np.zeros((0, 1, 3), np.float32), np.zeros(0, np.int64), gt, [0.0, 0.3], 21)
    assert conf[:, 0, 0].tolist() == [1, 1] and conf[:, 3, 0].tolist() == [1, 1]
    assert conf.sum() == 4


def test_cam_curve_matches_naive_loop_on_random_data():
    rng = np.random.default_rng(0)
    thresholds = np.arange(60) / 100
    total_fast = np.zeros((60, 21, 22), np.int64)
    total_naive = np.zeros_like(total_fast)
    for _ in range(5):
        keys = np.sort(rng.choice(20, size=rng.integers(1, 4), replace=False))
        # quantised scores so that exact ties with thresholds and between classes happen
        cams = (rng.integers(0, 70, size=(len(keys), 23, 31)) / 100).astype(np.float32)
        gt = rng.integers(0, 21, size=(23, 31))
        gt[rng.random(gt.shape) < 0.1] = 255
        total_fast += cam_threshold_confusions(cams, keys, gt, thresholds, 21)
        for j, t in enumerate(thresholds):
            total_naive[j] += confusion_counts(naive_cam_label(cams, keys, t), gt, 21)
    np.testing.assert_array_equal(total_fast, total_naive)


def test_cam_curve_keeps_threshold_order():
    rng = np.random.default_rng(1)
    cams = rng.random((2, 8, 8)).astype(np.float32)
    gt = rng.integers(0, 21, size=(8, 8))
    ts = [0.5, 0.1, 0.3]
    conf = cam_threshold_confusions(cams, [0, 7], gt, ts, 21)
    for j, t in enumerate(ts):
        np.testing.assert_array_equal(conf[j], confusion_counts(naive_cam_label(cams, [0, 7], t), gt, 21))


@pytest.mark.parametrize(
    "cams, keys, match",
    [
        (np.zeros((1, 2, 2)), [20], "keys"),
        (np.zeros((1, 2, 2)), [-1], "keys"),
        (np.zeros((2, 2, 2)), [1], "keys"),
        (np.zeros((2, 2, 2)), [1, 1], "distinct"),
        (np.zeros((1, 3, 2)), [1], "size"),
        (np.zeros((2, 2)), [1], "K, H, W"),
    ],
)
def test_cam_curve_bad_input_raises(cams, keys, match):
    with pytest.raises(ValueError, match=match):
        cam_threshold_confusions(cams, keys, np.zeros((2, 2), np.uint8), [0.1], 21)
