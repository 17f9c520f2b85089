"""Stage 1: train SEAM (ResNet-38 + PCM) with classification, ER and ECR losses on an image
batch and its 0.3x copy. Writes `<session_name>.pth` (the published checkpoint format)."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from network import add_network_flags, build_network
from network.weights import load_pretrained
from tool.cam import multiscale_cam, normalize_cams
from tool.cli import ArgumentParser, count, from_flags, non_negative, positive, run_script
from tool.fileio import require_files
from tool.imutils import IMAGENET_MEAN, IMAGENET_STD, PUBLISHED_COLOR_JITTER
from tool.losses import seam_losses
from tool.metrics import cam_threshold_confusions, iou_from_confusion
from tool.runtime import autocast, setup_device, to_input
from tool.trainer import TrainConfig, add_training_flags, add_validation_flags, training
from tool.vis import denormalize, load_label_png, max_cam_overlay
from voc12.data import ClsDataset, ClsDatasetMSF, TrainClsTransform
from voc12.dataset import TRAIN_LIST_HELP, add_dataset_flags, dataset_from_args, split_list


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_training_flags(p, batch_size=8, max_epoches=8, lr=0.01)
    add_network_flags(p, "network.resnet38_SEAM")
    p.add_argument("--train_list", default=None, help=TRAIN_LIST_HELP)
    p.add_argument("--session_name", default="resnet38_SEAM", help="output prefix: <name>.pth, <name>.log, ...")
    p.add_argument("--crop_size", type=count, default=448, help="square training crop (pixels)")
    p.add_argument("--resize_long", type=count, nargs=2, default=(448, 768), metavar=("MIN", "MAX"),
                   help="random resize of the long side into [MIN, MAX] before the crop")
    p.add_argument("--scale_factor", type=positive, default=0.3, help="size of the second branch")
    p.add_argument("--color_jitter", type=non_negative, nargs=4, default=PUBLISHED_COLOR_JITTER,
                   metavar=("BRIGHTNESS", "CONTRAST", "SATURATION", "HUE"), help="ColorJitter strengths")
    add_dataset_flags(p, labels=True)
    p.add_argument("--no_er", action="store_true", help="ablation: no equivariant regularisation")
    p.add_argument("--no_ecr", action="store_true", help="ablation: no equivariant cross regularisation")
    p.add_argument("--no_pcm", action="store_true", help="ablation: plain fc8 CAM, no PCM (and no min-pool term)")
    for term, what in LOSS_TERMS.items():
        p.add_argument(f"--{term}_weight", type=non_negative, default=1.0, help=f"weight of the {what} in the loss")
    add_validation_flags(p, "CAM mIoU of the fc8 and PCM maps (single scale and its flip, no CRF, the "
                            "best of --val_thresholds)")
    p.add_argument("--val_thresholds", type=non_negative, nargs="+",
                   default=tuple(round(0.05 * i, 2) for i in range(1, 13)), help="background thresholds scored")
    return p


# The loss terms (tool.losses.seam_losses) and what each is; the loss is their weighted sum, and the
# log shows each term unweighted.
LOSS_TERMS = {"cls": "classification loss", "er": "equivariant regularisation (ER)",
              "ecr": "equivariant cross regularisation (ECR)", "min_pool": "PCM min-pool term"}


def cam_grid(img, cam, cam_rv, n=4):
    """Input images with their max foreground CAM and PCM map overlaid, as (3n, 3, H, W) in [0, 1]."""
    rows = []
    for i in range(min(n, img.shape[0])):
        rgb = denormalize(img[i], IMAGENET_MEAN, IMAGENET_STD)
        for maps in (None, cam[i], cam_rv[i]):
            if maps is None:
                out = rgb
            else:
                fg = torch.relu(maps[1:].float())
                fg = fg / (fg.flatten(1).amax(dim=1)[:, None, None] + 1e-5)
                out = max_cam_overlay(rgb, fg.detach().cpu().numpy())
            rows.append(torch.from_numpy(out).permute(2, 0, 1).float() / 255)
    return torch.stack(rows)


def cam_validation(model, dataset, data, device, amp, channels_last, thresholds):
    """{cam, cam_rv}: mIoU (%) at the best of `thresholds`, its t and the curve, of the fc8 CAM and
    the PCM map on `dataset` (ClsDatasetMSF, one scale): what infer_seam.py --scales 1.0 (with
    --no_pcm for cam) and evaluation.py --type npz --t give."""
    n = data.num_classes
    confs = {"cam": 0, "cam_rv": 0}
    for i in range(len(dataset)):
        item = dataset[i]
        keys = np.nonzero(item["label"].numpy() > 1e-5)[0].astype(np.int64)
        label, gt = item["label"].to(device), load_label_png(data.mask_path(item["name"]))
        for name, output in (("cam", 0), ("cam_rv", 1)):
            total = multiscale_cam(model, item["images"], label, item["size"], device, amp, channels_last, output)
            cams = normalize_cams(total[torch.from_numpy(keys).to(device)].cpu().numpy())
            confs[name] = confs[name] + cam_threshold_confusions(cams, keys, gt, thresholds, n)
    scores = {}
    for name, conf in confs.items():
        curve = [100 * float(iou_from_confusion(c).mean()) for c in conf]
        best = int(np.argmax(curve))
        scores[name] = {"miou": curve[best], "t": float(thresholds[best]),
                        "curve": {f"{t:.2f}": m for t, m in zip(thresholds, curve)}}
    return scores


class TwoBranch(nn.Module):
    """Both SEAM branches in one call, the image and its `scale_factor` copy, so that DDP and
    torch.compile see one forward per step: (cam1, cam_rv1, cam2, cam_rv2)."""

    def __init__(self, net, scale_factor):
        super().__init__()
        self.net, self.scale_factor = net, scale_factor

    def forward(self, img):  # N, 3, H, W
        img2 = F.interpolate(img, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)
        return (*self.net(img), *self.net(img2))


def run(args):
    device = setup_device(args.device, args.amp, fixed_shapes=True, deterministic=args.deterministic)
    torch.manual_seed(args.seed)
    data = dataset_from_args(args)
    args.train_list = split_list(args.train_list, data, "train_aug")
    model = build_network(args.network, stage="seam", backbone=args.backbone, width=args.width,
                          frozen=not args.unfreeze, num_classes=data.num_classes, use_pcm=not args.no_pcm)
    dataset = ClsDataset(  # every input checked before anything is written
        args.train_list, data, args.cls_labels,
        transform=TrainClsTransform(args.crop_size, tuple(args.resize_long), tuple(args.color_jitter)),
    )  # fmt: skip
    skipped = dataset.check_images(args.skip_bad_images)
    if args.val_list:
        val_data = ClsDatasetMSF(args.val_list, data, args.cls_labels, scales=(1.0,))
        val_data.check_images()
        require_files([data.mask_path(n) for n in val_data.img_ids], "validation mask")
    with training(from_flags(TrainConfig, args), model, dataset, device, load_pretrained, skipped=skipped,
                  forward=TwoBranch(model, args.scale_factor)) as trainer:
        logger, channels_last = trainer.logger, trainer.channels_last
        loss_weights = {term: getattr(args, f"{term}_weight") for term in LOSS_TERMS}

        def step_fn(batch, draw):
            _, img, label = batch
            img, label = to_input(img, device, channels_last), label.to(device, non_blocking=True)
            with autocast(device, args.amp):
                cam1, cam_rv1, cam2, cam_rv2 = trainer.forward(img)
            terms = seam_losses(
                cam1.float(), cam_rv1.float(), cam2.float(), cam_rv2.float(), label,
                use_er=not args.no_er, use_ecr=not args.no_ecr, use_min_pool=not args.no_pcm, weights=loss_weights,
            )  # fmt: skip
            return terms, (img.detach(), cam1.detach(), cam_rv1.detach()) if draw else None

        def vis_fn(step, drawn):
            if logger.writer is not None:
                logger.images(step, "cam/input_cam_pcm", cam_grid(*drawn))

        def val_fn():
            return cam_validation(model, val_data, data, device, args.amp, channels_last, args.val_thresholds)

        trainer.run(step_fn, vis_fn, val_fn if args.val_list else None)


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
