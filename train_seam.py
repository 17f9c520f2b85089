"""Stage 1: train SEAM (ResNet-38 + PCM) with classification, ER and ECR losses on an image
batch and its transformed copy (published: 0.3x). Writes `<session_name>.pth` (the published
checkpoint format)."""

import numpy as np
import torch
from torch import nn

from network import build_network
from network.seam import PCM_FEATURES
from tool.cam import multiscale_cam, normalize_cams
from tool.engine.files import require_files
from tool.engine.runtime import (
    ArgumentParser,
    autocast,
    count,
    group,
    non_negative,
    positive,
    run_script,
    setup_device,
    shard,
    sum_over_ranks,
    to_input,
)
from tool.engine.training import TrainingRun, add_training_flags, add_validation_flags
from tool.imutils import IMAGENET_MEAN, IMAGENET_STD, PUBLISHED_COLOR_JITTER
from tool.losses import seam_losses
from tool.metrics import cam_threshold_confusions, iou_from_confusion
from tool.optim import PolyOptimizer
from tool.transforms import TRANSFORMS, parse_transform, step_generator
from tool.vis import denormalize, load_label_png, max_cam_overlay
from voc12.data import ClsDataset, ClsDatasetMSF, TrainClsTransform
from voc12.dataset import TRAIN_LIST_HELP, add_dataset_flags, dataset_from_args, split_list

# The loss terms (tool.losses.seam_losses) and what each is; the loss is their weighted sum, and the
# log shows each term unweighted.
LOSS_TERMS = {"cls": "classification loss", "er": "equivariant regularisation (ER)",
              "ecr": "equivariant cross regularisation (ECR)", "min_pool": "PCM min-pool term"}


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_training_flags(p, "network.resnet38_SEAM", batch_size=8, lr=0.01, max_epoches=8)
    add_dataset_flags(p, labels=True)
    group(p, "data").add_argument("--train_list", default=None, help=TRAIN_LIST_HELP)
    group(p, "outputs").add_argument("--session_name", default="resnet38_SEAM",
                                     help="output prefix: <name>.pth, <name>.log, ...")
    method = group(p, "method")
    method.add_argument("--crop_size", type=count, default=448, help="square training crop (pixels)")
    method.add_argument("--resize_long", type=count, nargs=2, default=(448, 768), metavar=("MIN", "MAX"),
                        help="random resize of the long side into [MIN, MAX] before the crop")
    method.add_argument("--transform", default=None,
                        help=f"the equivariant transformation A of the second branch, one of {', '.join(TRANSFORMS)} "
                             "with its value (rescale:0.3, flip, rotate:15 degrees, translate:0.1 of the side), a "
                             "range drawn per step (rotate:-15..15), or several composed with + (rescale:0.5+flip); "
                             "default: rescale:<--scale_factor>")
    method.add_argument("--scale_factor", type=positive, default=0.3,
                        help="size of the second branch: the published spelling of --transform rescale:F")
    method.add_argument("--color_jitter", type=non_negative, nargs=4, default=PUBLISHED_COLOR_JITTER,
                        metavar=("BRIGHTNESS", "CONTRAST", "SATURATION", "HUE"), help="ColorJitter strengths")
    method.add_argument("--no_er", action="store_true", help="ablation: no equivariant regularisation")
    method.add_argument("--no_ecr", action="store_true",
                        help="ablation: no equivariant cross regularisation (PCM then learns from its min-pool "
                             "term alone)")
    method.add_argument("--no_pcm", action="store_true", help="ablation: plain fc8 CAM, no PCM (and no min-pool term)")
    method.add_argument("--single_branch", action="store_true",
                        help="ablation: the plain-CAM baseline: one image, no second branch, classification loss "
                             "only (no ER, ECR or PCM)")
    method.add_argument("--ecr_top_ratio", type=positive, default=0.2,
                        help="ECR averages the largest this fraction of its per-pixel differences (at most 1)")
    method.add_argument("--pcm_features", default=PCM_FEATURES,
                        help="what PCM's embedding sees: some of image, conv4, conv5 (comma-separated; the "
                             "checkpoint records it)")
    for term, what in LOSS_TERMS.items():
        method.add_argument(f"--{term}_weight", type=non_negative, default=1.0,
                            help=f"weight of the {what} in the loss")
    add_validation_flags(p, "CAM mIoU of the fc8 and PCM maps against SegmentationClass/ as evaluation.py (single "
                            "scale and its flip, no CRF, the best of --val_thresholds)", namesake=True)
    method.add_argument("--val_thresholds", type=non_negative, nargs="+",
                        default=tuple(round(0.05 * i, 2) for i in range(1, 13)),
                        help="background thresholds scored by the --val_list validation")
    return p


class TwoBranch(nn.Module):
    """Both SEAM branches in one call, the image and its copy A(I) under the step's `transform`
    (tool.transforms; None: one branch), so that DDP and torch.compile see one forward per step:
    (cam1, cam_rv1, cam2, cam_rv2), the last two None for one branch."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, img, transform):  # N, 3, H, W
        return (*self.net(img), *(self.net(transform.image(img)) if transform is not None else (None, None)))


def run(args):
    if args.single_branch and args.transform:
        raise ValueError("--single_branch has no second branch to transform: leave out --transform")
    if args.ecr_top_ratio > 1:
        raise ValueError(f"--ecr_top_ratio {args.ecr_top_ratio}: a fraction, at most 1")
    transform = parse_transform(args.transform or f"rescale:{args.scale_factor}")
    use_pcm = not (args.no_pcm or args.single_branch)
    device = setup_device(args.device, args.amp, fixed_shapes=True, deterministic=args.deterministic)
    torch.manual_seed(args.seed)
    data = dataset_from_args(args)
    model = build_network(args.network, stage="seam", backbone=args.backbone, width=args.width,
                          frozen=not args.unfreeze, num_classes=data.num_classes, use_pcm=use_pcm,
                          pcm_features=args.pcm_features)
    augment = TrainClsTransform(args.crop_size, tuple(args.resize_long), tuple(args.color_jitter))
    args.train_list = split_list(args.train_list, data, "train_aug")
    dataset = ClsDataset(args.train_list, data, args.cls_labels, transform=augment)
    skipped = dataset.check_images(args.skip_bad_images)  # every input checked before anything is written
    val_data = None
    if args.val_list:
        val_data = ClsDatasetMSF(args.val_list, data, args.cls_labels, scales=(1.0,))
        val_data.check_images()
        require_files([data.eval_mask_path(n) for n in val_data.img_ids], "validation mask")
    loss_weights = {term: getattr(args, f"{term}_weight") for term in LOSS_TERMS}

    with TrainingRun(args, model, dataset, device, skipped) as run:
        optimizer = PolyOptimizer(model.get_parameter_groups(), args.lr, args.wt_dec, run.max_step, args.momentum,
                                  fused=device.type == "cuda")
        run.resume(optimizer)
        if val_data is not None:
            run.logger.info(data.eval_mask_note())
        forward = run.wrap(TwoBranch(model))
        for _, img, label in run.batches():
            img, label = to_input(img, device, run.channels_last), label.to(device, non_blocking=True)
            # this step's A: a range's value from a generator of (seed, step), the same on every process
            step_transform = None if args.single_branch else transform.draw(step_generator(args.seed, run.step))
            with autocast(device, args.amp):
                cams = forward(img, step_transform)
            cam1, cam_rv1, cam2, cam_rv2 = (c if c is None else c.float() for c in cams)
            terms = seam_losses(
                cam1, cam_rv1, cam2, cam_rv2, label, use_er=not args.no_er, use_ecr=not args.no_ecr,
                use_min_pool=use_pcm, top_ratio=args.ecr_top_ratio, weights=loss_weights, transform=step_transform,
            )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

            run.log_step(terms)
            if run.due(args.vis_interval) and run.logger.writer is not None:
                run.logger.images(run.step, "cam/input_cam_pcm", cam_grid(img, cam1, cam_rv1))
            run.validate(cam_validation, val_data, data, args.val_thresholds)  # every --val_interval, with --val_list
            run.checkpoint()
        run.finish()


def cam_grid(img, cam, cam_rv, n=4):
    """Input images with their max foreground CAM and PCM map overlaid, as (3n, 3, H, W) in [0, 1]."""
    rows = []
    for i in range(min(n, img.shape[0])):
        rgb = denormalize(img[i], IMAGENET_MEAN, IMAGENET_STD)
        rows.append(rgb)
        for maps in (cam[i], cam_rv[i]):
            fg = torch.relu(maps[1:].detach().float())
            fg = fg / (fg.flatten(1).amax(dim=1)[:, None, None] + 1e-5)
            rows.append(max_cam_overlay(rgb, fg.cpu().numpy()))
    return torch.stack([torch.from_numpy(r).permute(2, 0, 1).float() / 255 for r in rows])


def cam_validation(forward, dataset, data, device, thresholds):
    """{cam, cam_rv}: mIoU (%) at the best of `thresholds`, its t and the curve, of the fc8 CAM and
    the PCM map on `dataset` (ClsDatasetMSF, one scale): what infer_seam.py --scales 1.0 (with
    --no_pcm for cam) and evaluation.py --type npz --t --gt_dir <root>/SegmentationClass give
    (data.eval_mask_path: the published evaluation's masks). Under torchrun each rank scores its
    shard and the confusions are summed."""
    shape = (len(thresholds), data.num_classes, data.num_classes + 1)
    confs = {"cam": np.zeros(shape, np.int64), "cam_rv": np.zeros(shape, np.int64)}
    for i in shard(range(len(dataset))):
        item = dataset[i]
        keys = np.nonzero(item["label"].numpy() > 1e-5)[0].astype(np.int64)
        label, gt = item["label"].to(device), load_label_png(data.eval_mask_path(item["name"]))
        for output, name in enumerate(confs):
            total = multiscale_cam(forward, item["images"], label, item["size"], output)
            cams = normalize_cams(total[torch.from_numpy(keys).to(device)].cpu().numpy())
            confs[name] += cam_threshold_confusions(cams, keys, gt, thresholds, data.num_classes)
    confs = {name: sum_over_ranks(conf, device) for name, conf in confs.items()}
    scores = {}
    for name, conf in confs.items():
        curve = [100 * float(iou_from_confusion(c).mean()) for c in conf]
        best = int(np.argmax(curve))
        scores[name] = {"miou": curve[best], "t": float(thresholds[best]),
                        "curve": {f"{t:.2f}": m for t, m in zip(thresholds, curve)}}
    return scores


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
