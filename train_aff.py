"""Stage 3: train AffinityNet on pair labels from the low/high-alpha CRF maps of infer_seam.py.
Writes `<session_name>.pth` (the published checkpoint format)."""

import torch

from network import build_network
from tool.engine.files import require_files
from tool.engine.runtime import ArgumentParser, autocast, count, global_share, group, run_script, setup_device, to_input
from tool.engine.training import TrainingRun, add_training_flags
from tool.losses import affinity_loss
from tool.optim import PolyOptimizer
from voc12.data import AffDataset
from voc12.dataset import TRAIN_LIST_HELP, add_dataset_flags, dataset_from_args, split_list


def get_parser():
    p = ArgumentParser(description=__doc__)
    # lr: the published SEAM value (PSA used 0.1)
    add_training_flags(p, "network.resnet38_aff", batch_size=8, lr=0.01, max_epoches=8, images=False)
    add_dataset_flags(p)
    data = group(p, "data")
    data.add_argument("--train_list", default=None, help=TRAIN_LIST_HELP)
    data.add_argument("--la_crf_dir", required=True,
                      help="low-alpha CRF folder of infer_seam.py (<out_crf>_4.0; LA_ALPHA in the stage scripts)")
    data.add_argument("--ha_crf_dir", required=True,
                      help="high-alpha CRF folder of infer_seam.py (<out_crf>_24.0; HA_ALPHA in the stage scripts)")
    group(p, "outputs").add_argument("--session_name", default="resnet38_aff",
                                     help="output prefix: <name>.pth, <name>.log, ...")
    method = group(p, "method")
    method.add_argument("--crop_size", type=count, default=448, help="square training crop (pixels)")
    method.add_argument("--radius", type=count, default=5, help="pair radius on the feature grid")
    return p


def run(args):
    device = setup_device(args.device, args.amp, fixed_shapes=True, deterministic=args.deterministic)
    torch.manual_seed(args.seed)
    model = build_network(args.network, stage="aff", backbone=args.backbone, width=args.width,
                          frozen=not args.unfreeze, radius=args.radius)
    data = dataset_from_args(args)  # every input checked before anything is written
    args.train_list = split_list(args.train_list, data, "train_aug")
    dataset = AffDataset(args.train_list, data, args.la_crf_dir, args.ha_crf_dir,
                         crop_size=args.crop_size, radius=args.radius)
    skipped = dataset.check_images(args.skip_bad_images)
    require_files([path for n in dataset.img_ids for path in dataset.crf_paths(n)], "CRF map")

    with TrainingRun(args, model, dataset, device, skipped) as run:
        optimizer = PolyOptimizer(model.get_parameter_groups(), args.lr, args.wt_dec, run.max_step, args.momentum,
                                  fused=device.type == "cuda")
        run.resume(optimizer)
        forward = run.wrap(model)
        for _, img, (bg_pos, fg_pos, neg) in run.batches():
            img = to_input(img, device, run.channels_last)
            bg_pos, fg_pos, neg = (t.to(device, non_blocking=True) for t in (bg_pos, fg_pos, neg))
            with autocast(device, args.amp):
                aff = forward(img)
            counts = global_share(torch.stack([bg_pos.sum(), fg_pos.sum(), neg.sum()]))  # pairs in the global batch
            terms = affinity_loss(aff.float(), bg_pos, fg_pos, neg, counts=counts)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()

            run.log_step(terms)
            run.checkpoint()
        run.finish()


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
