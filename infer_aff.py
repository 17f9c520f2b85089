"""Stage 4: random walk with AffinityNet affinities -> pseudo-label PNGs (VOC palette).

Per image: CAM (background = (1 - max fg)^alpha) padded to a multiple of 8 and 8x8
average-pooled, propagated 2^logt steps with the transition (affinity^beta, column-normalised),
upsampled, argmax. The walk is sparse (a stencil over the radius pairs), on GPU when available.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

from network import resolve_network
from network.weights import network_for_checkpoint
from tool.affinity import effective_radius
from tool.crf import crf_inference, require_densecrf
from tool.engine.camfile import CAM_ARRAYS, load_cam, map_file_problem
from tool.engine.checkpoint import load_model
from tool.engine.files import require_files, save_label_png
from tool.engine.inference import add_inference_flags, images_to_do, infer_all, prepare_outputs
from tool.engine.runtime import (
    ArgumentParser,
    autocast,
    count,
    group,
    non_negative_int,
    positive,
    run_script,
    setup_device,
    to_input,
)
from tool.imutils import IMAGENET_MEAN
from tool.randomwalk import cam_on_grid, padded_size, random_walk, scores_to_label
from voc12.data import ImageDataset, load_image
from voc12.dataset import (
    EVAL_LIST_HELP,
    NUM_CLASSES_HELP,
    add_dataset_flags,
    check_num_classes,
    dataset_from_args,
    split_list,
)


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_inference_flags(p, "AffinityNet checkpoint (<session_name>.pth)", "network.resnet38_aff",
                        f"{EVAL_LIST_HELP}; published: voc12/val.txt",
                        amp_help="mixed precision of the affinity features: auto = bf16 on CUDA, fp32 on CPU; "
                                 "off = exact fp32 (no TF32); the walk itself is fp32")
    add_dataset_flags(p)
    data = group(p, "data")
    data.add_argument("--num_classes", type=count, default=None, help=NUM_CLASSES_HELP)
    data.add_argument("--cam_dir", required=True, help="CAM folder of infer_seam.py (--out_cam)")
    group(p, "outputs").add_argument("--out_rw", required=True,
                                     help="folder of <id>.png pseudo labels (published default: out_rw)")
    method = group(p, "method")
    method.add_argument("--alpha", type=positive, default=6, help="background power of the CAM")
    method.add_argument("--beta", type=positive, default=8, help="power of the affinities")
    method.add_argument("--logt", type=non_negative_int, default=6, help="the walk takes 2^logt steps")
    method.add_argument("--radius", type=count, default=5, help="pair radius on the feature grid (as stage 3 trained)")
    method.add_argument("--crf", action="store_true", help="dense CRF (t=1) on the walked scores before argmax")
    return p


def crf_label(img_path, image_hw, out_path, scores):
    """CRF worker: upsampled walk scores (C, H', W') -> CRF (t=1) on the padded image -> PNG."""
    h, w = image_hw
    img = np.asarray(load_image(img_path))
    ph, pw = scores.shape[1:]
    padded = np.empty((ph, pw, 3), np.uint8)
    padded[:] = (np.array(IMAGENET_MEAN) * 255).astype(np.uint8)  # the published pad is 0 after normalising
    padded[:h, :w] = img
    probs = crf_inference(padded, scores, t=1)
    save_label_png(out_path, np.argmax(probs, axis=0)[:h, :w].astype(np.uint8))


def run(args):
    resolve_network(args.network, "aff")
    data = dataset_from_args(args)
    args.num_classes = check_num_classes(data, args.num_classes, "--num_classes")
    args.infer_list = split_list(args.infer_list, data, "train")
    device = setup_device(args.device, args.amp)
    # strictly: the published strict=False ran a random head on a wrong file
    model, channels_last = load_model(
        args.weights, lambda state: network_for_checkpoint(state, "aff", args.weights, radius=args.radius), device,
        args.channels_last, args.allow_pickle)
    dataset = ImageDataset(args.infer_list, data)

    def cam_path(name):
        return os.path.join(args.cam_dir, name + ".npz")

    def cam_file(name):
        return [(cam_path(name), lambda path: map_file_problem(path, CAM_ARRAYS))]

    for line in dataset.check_images(args.skip_bad_images, map_files=cam_file):
        print(f"skipped {line}")
    prepare_outputs([args.out_rw])

    def out_path(name):
        return os.path.join(args.out_rw, name + ".png")

    def complete(name):
        return os.path.exists(out_path(name))

    listed = dataset.img_ids
    dataset.img_ids = images_to_do(listed, complete, args.overwrite)
    require_files([cam_path(n) for n in dataset.img_ids], "CAM")
    if args.crf:
        require_densecrf()

    def walked_on_device(items):
        for name, img in items:
            keys, cams = load_cam(cam_path(name), data.num_classes)
            h, w = img.shape[1:]
            if cams.shape[1:] != (h, w):
                raise ValueError(f"{cam_path(name)}: CAM is {cams.shape[1:]}, image is {(h, w)}")
            ph, pw = padded_size(h, w)
            with torch.no_grad(), autocast(device, args.amp):
                aff = model(to_input(F.pad(img, (0, pw - w, 0, ph - h))[None], device, channels_last))[0].float()
            grid = cam_on_grid(cams, keys, args.alpha, data.num_classes).to(device, non_blocking=True)
            walked = random_walk(grid, aff, effective_radius(args.radius, grid.shape[1:]), args.beta, args.logt)
            if args.crf:
                upsampled = F.interpolate(walked[None], (ph, pw), mode="bilinear", align_corners=False)[0]
                yield (crf_label, data.image_path(name), (h, w), out_path(name)), upsampled
            else:
                channels = np.concatenate([[0], keys + 1])  # a walk keeps the other channels zero
                label = scores_to_label(walked, (h, w), channels=channels, as_tensor=True)
                yield (save_label_png, out_path(name)), label

    infer_all(dataset, walked_on_device, args, device, crf=args.crf, desc="infer_aff", listed=listed,
              complete=complete, folder=args.out_rw)


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
