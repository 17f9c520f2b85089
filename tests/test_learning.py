"""Each training stage learns: a broken stage (wrong labels, loss, augmentation or BN handling)
fails these. Tiny toy sets, fixed seeds, CPU, no timing; the bars sit far below what a correct
stage reaches (measured figures beside each) and far above chance."""
import numpy as np
import pytest
import torch
from PIL import Image

import evaluation
import infer_seg
import train_aff
import train_seam
import train_seg
from network import resnet38_aff, resnet38_seam
from network.weights import load_state_dict_file, load_weights_strict
from tool.affinity import affinity_labels_in_radius
from tool.engine.files import save_npz
from tool.imutils import avg_pool_hw
from tool.vis import load_label_png
from voc12.data import eval_transform, load_image
from voc12.labels import load_cls_labels, load_img_id_list
from voc12.toy import generate_toy_voc

SEG_STEPS, SEAM_STEPS, AFF_STEPS = "300", "200", "80"
# The toy images' side, and the training crop: 64 px for stages 1 and 5; AffinityNet's pairs of
# radius 5 need a feature grid of 12 x 12, so 96 px there.
SIZE, AFF_SIZE = 64, 96


pytestmark = pytest.mark.usefixtures("one_thread")


def eight_images(tmp_path_factory, size):
    root = tmp_path_factory.mktemp(f"toy{size}")
    generate_toy_voc(str(root), n_train_aug=8, n_train=8, n_val=2, size=size, seed=3)
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return eight_images(tmp_path_factory, SIZE)


@pytest.fixture(scope="module")
def toy96(tmp_path_factory):
    return eight_images(tmp_path_factory, AFF_SIZE)


def common(toy, out, session):
    return ["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train.txt"),
            "--session_name", str(out / session),
            "--tblog_dir", str(out / "tb"), "--num_workers", "0", "--device", "cpu", "--seed", "0",
            "--unfreeze", "--no_dropout", "--momentum", "0.9", "--log_interval", "1000", "--ckpt_interval", "100000"]


def test_segmentation_fits_the_ground_truth_of_a_few_images(toy, tmp_path, capsys):
    train_seg.main([*common(toy, tmp_path, "seg"), "--width", "0.0625", "--crop_size", str(SIZE), "--batch_size", "4",
                    "--max_step", SEG_STEPS, "--lr", "0.01", "--bn_momentum", "0.1"])
    infer_seg.main(["--weights", str(tmp_path / "seg.pth"), "--voc12_root", str(toy), "--infer_list",
                    str(toy / "train.txt"), "--out_seg", str(tmp_path / "pred"), "--num_workers", "0", "--no_crf",
                    "--scales", "1.0", "--device", "cpu"])
    args = ["--list", str(toy / "train.txt"), "--gt_dir", str(toy / "SegmentationClass"), "--logfile", "",
            "--num_workers", "1"]
    fitted = evaluation.main([*args, "--predict_dir", str(tmp_path / "pred")])["miou"]
    (tmp_path / "bg").mkdir()
    for name in load_img_id_list(toy / "train.txt"):
        gt = load_label_png(toy / "SegmentationClass" / f"{name}.png")
        Image.fromarray(np.zeros_like(gt)).save(tmp_path / "bg" / f"{name}.png")
    background = evaluation.main([*args, "--predict_dir", str(tmp_path / "bg")])["miou"]
    # measured 26.6 mIoU at width 1/16 on 64 px (19.3 in 200 steps; 29.7 on 96 px; 39.2 at width 1/8
    # on 96 px, where the stage-5 head of an earlier release, with its N(0, 0.01) classifier init,
    # reached 13); background everywhere 4.10
    assert fitted > 15 and fitted > 3.5 * background, (fitted, background)


def test_seam_learns_the_image_labels(toy, tmp_path):
    train_seam.main([*common(toy, tmp_path, "seam"), "--cls_labels", str(toy / "cls_labels.txt"), "--width", "0.0625",
                     "--crop_size", str(SIZE), "--resize_long", str(SIZE), str(SIZE * 4 // 3), "--batch_size", "4",
                     "--max_step", SEAM_STEPS,
                     "--lr", "0.03"])
    net = resnet38_seam.Net(width=0.0625)
    load_weights_strict(net, load_state_dict_file(tmp_path / "seam.pth"))
    net.eval()
    names = load_img_id_list(toy / "train.txt")
    labels = load_cls_labels(toy / "cls_labels.txt")
    x = torch.stack([eval_transform(load_image(toy / "JPEGImages" / f"{n}.jpg")) for n in names])
    with torch.no_grad():
        scores = net(x)[0][:, 1:].mean(dim=(2, 3)).numpy()  # the classification logits (GAP of the CAM)
    truth = np.stack([labels[n] for n in names]) > 0
    top1 = truth[np.arange(len(names)), scores.argmax(1)].mean()  # chance: about 0.09 (1.8 of 20 present)
    # every present class above every absent one of the same image; chance about 0.03
    ranked = np.mean([scores[i][truth[i]].min() > scores[i][~truth[i]].max() for i in range(len(names))])
    # measured 0.625 and 0.625 in 200 steps on 64 px (0.375 / 0.25 in 150; on 96 px 0.625 / 0.5-0.625 in
    # 150 steps, 0.75 / 0.75 in 300; 0.5 / 0.5 at lr 0.01)
    assert top1 >= 0.375 and ranked >= 0.25, (top1, ranked)


def test_affinitynet_separates_same_class_from_different_class_pairs(toy96, tmp_path):
    """CRF maps made from the ground truth (confident everywhere): the pair labels are exact."""
    toy = toy96
    names = load_img_id_list(toy / "train.txt")
    for name in names:
        gt = load_label_png(toy / "SegmentationClassAug" / f"{name}.png").astype(np.int64)
        keys = np.unique(gt)
        scores = (gt[None] == keys[:, None, None]).astype(np.float32)
        for folder in ("la", "ha"):
            save_npz(str(tmp_path / folder / f"{name}.npz"), keys=keys, scores=scores)
    train_aff.main([*common(toy, tmp_path, "aff"), "--la_crf_dir", str(tmp_path / "la"), "--ha_crf_dir",
                    str(tmp_path / "ha"), "--width", "0.125", "--crop_size", str(AFF_SIZE), "--batch_size", "4",
                    "--max_step", AFF_STEPS, "--lr", "0.01"])
    net = resnet38_aff.Net(width=0.125)
    load_weights_strict(net, load_state_dict_file(tmp_path / "aff.pth"))
    net.eval()
    same, different = [], []
    for name in names:
        x = eval_transform(load_image(toy / "JPEGImages" / f"{name}.jpg"))[None]
        with torch.no_grad():
            aff = net(x)[0].numpy()  # (offsets, P) on the 12 x 12 grid
        gt = load_label_png(toy / "SegmentationClassAug" / f"{name}.png")
        keys = np.unique(gt)
        grid = keys[avg_pool_hw((gt[..., None] == keys).astype(np.float32), 8).argmax(-1)]  # 12 x 12, as training
        bg_pos, fg_pos, neg = affinity_labels_in_radius(grid, 5)
        same.append(aff[(bg_pos + fg_pos) > 0])
        different.append(aff[neg > 0])
    same, different = np.concatenate(same), np.concatenate(different)
    # how often a random same-class pair scores above a random different-class pair (AUC)
    auc = (same[:, None] > different[None, :]).mean()
    # measured: AUC 0.987, mean affinity 0.721 same vs 0.110 different in 80 steps (0.989, 0.761 vs 0.098
    # in 100; 0.943, 0.676 vs 0.181 in 60)
    assert auc > 0.9 and same.mean() > different.mean() + 0.3, (auc, same.mean(), different.mean())
