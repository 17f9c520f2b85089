"""Stage 5: train DeepLab-v1 (ResNet-38 backbone) on pseudo-label PNGs, e.g. infer_aff.py's output
over train_aug (--label_dir); without --label_dir the data set's ground-truth masks are used.
The defaults are the authors' retraining (seamv1-pseudovoc, 64.754 val mIoU): every BN on batch
statistics with running-statistic momentum 0.0003 and its affine untrained, nothing frozen, HSV
shift, cross-entropy ignoring 255 on logits upsampled to the crop. Writes `<session_name>.pth`."""

import numpy as np
import torch

from network import build_network
from tool.batchnorm import BNGroups
from tool.cam import multiscale_probs
from tool.engine.files import require_files
from tool.engine.runtime import (
    ArgumentParser,
    autocast,
    count,
    global_share,
    group,
    non_negative_int,
    positive,
    run_script,
    setup_device,
    shard,
    sum_over_ranks,
    to_input,
    world,
)
from tool.engine.training import TrainingRun, add_training_flags, add_validation_flags
from tool.imutils import IMAGENET_MEAN, IMAGENET_STD
from tool.losses import segmentation_loss
from tool.metrics import confusion_counts, iou_from_confusion
from tool.optim import PolyOptimizer
from tool.vis import colorize, denormalize, load_label_png
from voc12.data import SegDataset, SegInferDataset
from voc12.dataset import (
    NUM_CLASSES_HELP,
    TRAIN_LIST_HELP,
    add_dataset_flags,
    check_num_classes,
    dataset_from_args,
    split_list,
)


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_training_flags(p, "network.resnet38_seg", batch_size=10, lr=0.001, max_step=20000, momentum=0.9, workers=4,
                       unfreeze_help="train the BN weights and biases too (the authors' recipe keeps them as "
                                     "loaded): for random initialisation only",
                       weights_help="ImageNet weights (.params, imagenet), a .pth (another stage's backbone, ours or "
                                    "the authors' DeepLab checkpoint to fine-tune), or none (random init)")
    add_dataset_flags(p)
    data = group(p, "data")
    data.add_argument("--num_classes", type=count, default=None, help=NUM_CLASSES_HELP)
    data.add_argument("--train_list", default=None, help=TRAIN_LIST_HELP)
    data.add_argument("--label_dir", default=None,
                      help="folder of <id>.png pseudo labels (default: the data set's ground-truth masks; "
                           "published: the authors' own stage-4 folder)")
    group(p, "outputs").add_argument("--session_name", default="resnet38_seg",
                                     help="output prefix: <name>.pth, <name>.log, ... (published: the experiment "
                                          "seamv1-pseudovoc)")
    method = group(p, "method")
    method.add_argument("--crop_size", type=count, default=448, help="square training crop (pixels)")
    method.add_argument("--scale_range", type=positive, nargs=2, default=(0.5, 1.5), metavar=("MIN", "MAX"),
                        help="random rescale of image and label before the crop")
    method.add_argument("--hsv_shift", type=non_negative_int, default=10,
                        help="random shift of each of H, S, V in [-n, n]")
    net = group(p, "network and weights")
    net.add_argument("--bn_momentum", type=positive, default=3e-4, help="running-statistic momentum of every BN")
    net.add_argument("--bn_groups", type=count, default=2,
                     help="BN batch statistics over this many equal parts of the global batch, running statistics "
                          "from the first: the published run's DataParallel over 2 GPUs (5 images each). Under "
                          "torchrun with N processes each computes bn_groups / N of them (N = 2: exactly the "
                          "published statistics, one group per GPU); with N >= bn_groups each process's "
                          "batch_size / N images are one group")
    net.add_argument("--sync_bn", action="store_true",
                     help="under torchrun on GPUs: BN statistics over the whole global batch (SyncBatchNorm), "
                          "not per group")
    net.add_argument("--frozen_bn", action="store_true",
                     help="variant: backbone BN on its ImageNet statistics and conv1a/b2* fixed, as stages 1 and 3")
    add_validation_flags(p, "mIoU against SegmentationClass/ as evaluation.py (single scale and its flip, no CRF)")
    return p


def run(args):
    if args.frozen_bn and args.unfreeze:
        raise SystemExit("error: --frozen_bn and --unfreeze contradict each other")
    if args.frozen_bn and args.sync_bn:
        raise SystemExit("error: --frozen_bn and --sync_bn contradict each other (frozen BN has no batch statistics)")
    if args.bn_groups > args.batch_size:  # at least 1: argparse's count
        raise SystemExit(f"error: --bn_groups {args.bn_groups} must be between 1 and --batch_size {args.batch_size}")
    if args.max_epoches is not None:  # given, so --max_step was not: the length is in epochs
        args.max_step = None
    n_proc = world()[1]
    if n_proc < args.bn_groups and args.bn_groups % n_proc and not args.sync_bn:
        raise SystemExit(f"error: --bn_groups {args.bn_groups} is not divisible by the {n_proc} torchrun processes")
    local_groups = 1 if args.sync_bn else max(1, args.bn_groups // n_proc)
    data = dataset_from_args(args)
    args.num_classes = check_num_classes(data, args.num_classes, "--num_classes")
    args.train_list = split_list(args.train_list, data, "train_aug")
    device = setup_device(args.device, args.amp, fixed_shapes=True, deterministic=args.deterministic)
    torch.manual_seed(args.seed)
    # --unfreeze: here the only thing the authors' recipe keeps fixed is the BN affine.
    model = build_network(args.network, stage="seg", backbone=args.backbone, width=args.width,
                          frozen=args.frozen_bn, num_classes=args.num_classes, bn_momentum=args.bn_momentum,
                          train_bn_affine=args.unfreeze)
    if args.sync_bn and n_proc > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # every input checked before anything is written
    dataset = SegDataset(args.train_list, data, args.label_dir, crop_size=args.crop_size,
                         scale_range=tuple(args.scale_range), hsv_shift=args.hsv_shift)
    skipped = dataset.check_images(args.skip_bad_images)
    require_files([data.mask_path(n, args.label_dir) for n in dataset.img_ids], "label PNG")
    val_data = None
    if args.val_list:
        val_data = SegInferDataset(args.val_list, data, scales=(1.0,))
        val_data.check_images()
        require_files([data.eval_mask_path(n) for n in val_data.img_ids], "validation mask")

    with TrainingRun(args, model, dataset, device, skipped) as run:
        # The authors' poly schedule runs to max_step + 1: lr0 * (1 - step / (max_step + 1)) ** 0.9.
        optimizer = PolyOptimizer(model.get_parameter_groups(), args.lr, args.wt_dec, run.max_step, args.momentum,
                                  horizon=run.max_step + 1, fused=device.type == "cuda")
        run.resume(optimizer)
        if val_data is not None:
            run.logger.info(data.eval_mask_note())
        forward = run.wrap(BNGroups(model, local_groups))
        for _, img, label in run.batches():
            img, label = to_input(img, device, run.channels_last), label.to(device, non_blocking=True)
            with autocast(device, args.amp):
                logits = forward(img)
            # label values were checked by the data workers: no GPU sync here
            labelled = global_share((label != 255).sum())
            terms = {"loss": segmentation_loss(logits.float(), label, check_labels=False, count=labelled)}
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

            run.log_step(terms)
            if run.due(args.vis_interval) and run.logger.writer is not None:
                run.logger.images(run.step, "seg/input_label_pred", seg_grid(img, label, logits))
            run.validate(seg_validation, val_data, data)  # every --val_interval, with --val_list
            run.checkpoint()
        run.finish()


def seg_validation(forward, dataset, data, device):
    """{seg: {miou}}: mIoU (%) on `dataset` (SegInferDataset, one scale), what infer_seg.py
    --scales 1.0 --no_crf and evaluation.py --type png --gt_dir <root>/SegmentationClass give
    (data.eval_mask_path: the published evaluation's masks). Under torchrun each rank scores its
    shard and the confusions are summed."""
    conf = np.zeros((data.num_classes, data.num_classes + 1), np.int64)
    for i in shard(range(len(dataset))):
        item = dataset[i]
        probs = multiscale_probs(forward, item["images"], item["size"])
        pred = probs.max(dim=0).indices.to(torch.uint8).cpu().numpy()  # = argmax, as infer_seg.py
        conf += confusion_counts(pred, load_label_png(data.eval_mask_path(item["name"])), data.num_classes)
    return {"seg": {"miou": 100 * float(iou_from_confusion(sum_over_ranks(conf, device)).mean())}}


def seg_grid(img, label, logits, n=4):
    """Input, label and prediction per image as (3n, 3, H, W) in [0, 1]."""
    pred = logits.detach().float().argmax(1)
    rows = []
    for i in range(min(n, img.shape[0])):
        cells = (denormalize(img[i], IMAGENET_MEAN, IMAGENET_STD), colorize(label[i].cpu().numpy()),
                 colorize(pred[i].cpu().numpy()))
        rows += [torch.from_numpy(c).permute(2, 0, 1).float() / 255 for c in cells]
    return torch.stack(rows)


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
