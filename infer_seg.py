"""Stage 5 inference: DeepLab label maps as VOC-palette PNGs, <out_seg>/<id>.png, for any list.

The authors' test procedure (seamv1-pseudovoc): normalise the image, resize the float image to
every scale (default 0.5 .. 1.75, bicubic), the net on it and its flip (eval mode: running BN
statistics), logits upsampled to the image size (bilinear, align_corners=True), flips undone,
mean of the 12, softmax; dense CRF with 1 mean-field iteration and bilateral sxy 32 (on worker
processes; --no_crf to skip); argmax. Loads our checkpoints and the authors' released one
(deeplabv1_resnet38_VOCDataset_itr20000_all_64.754.pth) strictly. Existing PNGs are skipped
unless --overwrite.
Score with: python evaluation.py --list L --predict_dir <out_seg> --gt_dir ROOT/SegmentationClass --type png
"""
import argparse
import os

import numpy as np
import torch

from network import resolve_network
from network.weights import checkpoint_num_classes, network_for_checkpoint
from tool.cam import multiscale_probs
from tool.crf import crf_inference, require_densecrf
from tool.engine.checkpoint import load_model
from tool.engine.files import save_label_png
from tool.engine.inference import add_inference_flags, images_to_do, infer_all, prepare_outputs
from tool.engine.runtime import ArgumentParser, count, group, model_forward, positive, run_script, setup_device
from voc12.data import SegInferDataset, load_image
from voc12.dataset import NUM_CLASSES_HELP, add_dataset_flags, check_num_classes, dataset_from_args, split_list


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_inference_flags(p, "segmentation checkpoint: train_seg.py's <session_name>.pth or the authors' release",
                        "network.resnet38_seg", "default: the data set's val list (voc12/val.txt for VOC)",
                        amp_help="mixed precision of the forward passes: auto = bf16 on CUDA, fp32 on CPU; "
                                 "off = exact fp32 (no TF32)", published_workers=4)
    add_dataset_flags(p)
    group(p, "data").add_argument("--num_classes", type=count, default=None, help=NUM_CLASSES_HELP)
    group(p, "outputs").add_argument("--out_seg", required=True, help="output folder of <id>.png label maps")
    method = group(p, "method")
    method.add_argument("--scales", type=positive, nargs="+", default=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                        help="test scales (each with its flip)")
    method.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True,
                        help="dense CRF on the softmax before argmax (default on; --no-crf or --no_crf to skip)")
    method.add_argument("--no_crf", dest="crf", action="store_false", help=argparse.SUPPRESS)
    method.add_argument("--crf_t", type=count, default=1, help="CRF mean-field iterations")
    method.add_argument("--crf_bilateral_sxy", type=positive, default=32, help="CRF bilateral kernel's spatial sigma")
    return p


def crf_label_png(img_path, out_path, t, bilateral_sxy, probs):
    """CRF worker: (C, H, W) probabilities -> dense CRF on the uint8 image -> argmax PNG."""
    img = np.asarray(load_image(img_path))
    q = crf_inference(img, probs, t=t, bilateral_sxy=bilateral_sxy)
    save_label_png(out_path, np.argmax(q, axis=0).astype(np.uint8))


def run(args):
    resolve_network(args.network, "seg")
    data = dataset_from_args(args)
    args.num_classes = check_num_classes(data, args.num_classes, "--num_classes")
    args.infer_list = split_list(args.infer_list, data, "val")
    device = setup_device(args.device, args.amp)
    if args.crf:
        require_densecrf("--no_crf")

    def build(state):  # the network the checkpoint says it is (ResNet-38 for the authors' one)
        check_num_classes(data, checkpoint_num_classes(state, "seg"), args.weights)
        return network_for_checkpoint(state, "seg", args.weights, num_classes=data.num_classes)

    model, channels_last = load_model(args.weights, build, device, args.channels_last, args.allow_pickle)
    forward = model_forward(model, device, args.amp, channels_last)
    dataset = SegInferDataset(args.infer_list, data, scales=args.scales)
    for line in dataset.check_images(args.skip_bad_images):
        print(f"skipped {line}")
    prepare_outputs([args.out_seg])

    def out_path(name):
        return os.path.join(args.out_seg, name + ".png")

    def complete(name):
        return os.path.exists(out_path(name))

    listed = dataset.img_ids
    dataset.img_ids = images_to_do(listed, complete, args.overwrite)

    def outputs_on_device(items):
        for item in items:
            name = item["name"]
            probs = multiscale_probs(forward, item["images"], item["size"])
            if args.crf:
                yield (crf_label_png, data.image_path(name), out_path(name), args.crf_t, args.crf_bilateral_sxy), probs
            else:
                yield (save_label_png, out_path(name)), probs.max(dim=0).indices.to(torch.uint8)

    infer_all(dataset, outputs_on_device, args, device, crf=args.crf, desc="infer_seg", listed=listed,
              complete=complete, folder=args.out_seg)


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
