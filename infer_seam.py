"""Stage 2: multi-scale + flip CAMs from the PCM output (`cam_rv`), published normalisation,
optional hard labels and dense-CRF maps at two background powers.

Outputs per image (pickle-free; existing ones are skipped unless --overwrite):
  <out_cam>/<id>.npz            keys (0-based fg class ids), cams (K, H, W) in --cam_dtype
  <out_crf>_<alpha>/<id>.npz    keys (0, fg ids + 1), scores (K+1, H, W) in --cam_dtype
  <out_cam_pred>/<id>.png       label map with background score --out_cam_pred_alpha
"""
import os

import numpy as np
import torch
from PIL import Image

from network import resolve_network
from network.weights import checkpoint_num_classes, network_for_checkpoint
from tool.cam import cams_to_label, multiscale_cam, normalize_cams
from tool.crf import crf_with_alpha, require_densecrf
from tool.engine.camfile import STORAGE, map_bytes, save_cam, save_crf
from tool.engine.checkpoint import load_model
from tool.engine.files import atomic_path, check_free_space, save_label_png
from tool.engine.inference import add_inference_flags, images_to_do, infer_all, prepare_outputs
from tool.engine.runtime import ArgumentParser, group, model_forward, positive, run_script, setup_device
from voc12.data import ClsDatasetMSF, load_image
from voc12.dataset import EVAL_LIST_HELP, add_dataset_flags, check_num_classes, dataset_from_args, split_list


def get_parser():
    p = ArgumentParser(description=__doc__)
    add_inference_flags(p, "stage-1 checkpoint (<session_name>.pth)", "network.resnet38_SEAM", EVAL_LIST_HELP,
                        amp_help="mixed precision of the forward passes: auto = bf16 on CUDA, fp32 on CPU; "
                                 "off = exact fp32 CAMs (no TF32)")
    add_dataset_flags(p, labels=True)
    out = group(p, "outputs")
    out.add_argument("--cam_dtype", choices=STORAGE, default=None,
                     help="how CAM and CRF maps are stored: float32 (exact), float16 (error <= 2^-12) or uint8 "
                          "(quantised, error <= 1/510); default: the data set's (VOC float32, COCO uint8, "
                          "folders float16)")
    out.add_argument("--out_cam", default=None, help="folder of <id>.npz CAMs (the image's classes only)")
    out.add_argument("--out_cam_npy", default=None, help="also write the published pickled-dict .npy CAMs here")
    out.add_argument("--out_crf", default=None,
                     help="prefix: folders <out_crf>_<alpha> are written (alpha as a Python float: crf_4.0, crf_0.25)")
    out.add_argument("--out_cam_pred", default=None, help="folder of <id>.png CAM labels at --out_cam_pred_alpha")
    method = group(p, "method")
    method.add_argument("--out_cam_pred_alpha", type=positive, default=0.26, help="background score of --out_cam_pred")
    method.add_argument("--scales", type=positive, nargs="+", default=(0.5, 1.0, 1.5, 2.0),
                        help="image scales of the multi-scale CAM (each with its flip)")
    method.add_argument("--crf_alphas", type=positive, nargs="+", default=(4.0, 24.0),
                        help="background powers of the CRF maps, with --out_crf (low: confident foreground, high: "
                             "confident background)")
    method.add_argument("--no_pcm", action="store_true",
                        help="write the fc8 CAM instead of the PCM map (a net trained with --no_pcm has only the "
                             "fc8 CAM, with or without this flag)")
    group(p, "faults").add_argument("--ignore_disk_check", action="store_true",
                                    help="start even when the output folders' free space is less than what the run "
                                         "may write")
    return p


def crf_folder(out_crf, alpha):
    """<out_crf>_<alpha>, alpha written in full (4 -> crf_4.0, 0.125 -> crf_0.125), so no two powers share one."""
    return f"{out_crf}_{float(alpha)!r}"


def output_folders(args):
    """{output: (folder, extension)} of the outputs asked for (the CRF maps' keys: crf_<alpha>)."""
    folders = {"cam": (args.out_cam, ".npz"), "cam_npy": (args.out_cam_npy, ".npy"),
               "pred": (args.out_cam_pred, ".png")}
    folders.update({f"crf_{a}": (crf_folder(args.out_crf, a), ".npz") for a in args.crf_alphas if args.out_crf})
    return {key: where for key, where in folders.items() if where[0]}


def output_paths(args, name):
    return {key: os.path.join(folder, name + ext) for key, (folder, ext) in output_folders(args).items()}


def output_bytes(args, dataset, names, storage):
    """{folder: bytes} the outputs of `names` may take before compression: kept classes x image
    size x the storage dtype (CAMs, each CRF power with background, the PNG, the .npy)."""
    needs, folders = {}, output_folders(args)
    for name in names:
        with Image.open(dataset.data.image_path(name)) as img:
            w, h = img.size  # the header only
        k = int((dataset.labels[name] > 1e-5).sum())
        sizes = {"cam": map_bytes(k, h, w, storage), "cam_npy": map_bytes(k, h, w, "float32"), "pred": h * w}
        for key, (folder, _) in folders.items():  # the others: a CRF map, background included
            needs[folder] = needs.get(folder, 0) + sizes.get(key, map_bytes(k + 1, h, w, storage))
    return needs


def write_outputs(img_path, keys, paths, pred_bg, crf_alphas, storage, present):
    """Runs on a CRF worker: files for one image from its present-class CAMs (C, H, W)."""
    cams = normalize_cams(present)  # per class: the same as normalising all, then selecting
    if "cam" in paths:
        save_cam(paths["cam"], keys, cams, storage)
    if "cam_npy" in paths:  # the published format, for other tools; never read back here
        with atomic_path(paths["cam_npy"]) as tmp, open(tmp, "wb") as f:
            np.save(f, {int(k): c for k, c in zip(keys, cams)}, allow_pickle=True)  # legacy export
    if "pred" in paths:
        save_label_png(paths["pred"], cams_to_label(cams, keys, pred_bg))
    if crf_alphas:
        img = np.asarray(load_image(img_path))
        crf_keys = np.concatenate([[0], keys + 1]).astype(np.int64)
        for alpha in crf_alphas:
            save_crf(paths[f"crf_{alpha}"], crf_keys, crf_with_alpha(img, cams, alpha), storage)


def run(args):
    resolve_network(args.network, "seam")
    data = dataset_from_args(args)
    args.infer_list = split_list(args.infer_list, data, "train")
    if len(set(args.crf_alphas)) < len(args.crf_alphas):  # positive and finite: the flag's type checks that
        raise SystemExit(f"error: --crf_alphas {' '.join(map(str, args.crf_alphas))}: give distinct positive powers")
    device = setup_device(args.device, args.amp)

    def build(state):  # the network the checkpoint says it is (ResNet-38 for the published one)
        check_num_classes(data, checkpoint_num_classes(state, "seam"), args.weights)
        return network_for_checkpoint(state, "seam", args.weights, use_pcm=False if args.no_pcm else None)

    model, channels_last = load_model(args.weights, build, device, args.channels_last, args.allow_pickle)
    forward = model_forward(model, device, args.amp, channels_last)
    storage = args.cam_dtype or data.cam_storage
    out_folders = [folder for folder, _ in output_folders(args).values()]
    if not out_folders:
        raise SystemExit("error: nothing to write: give --out_cam, --out_crf, --out_cam_pred or --out_cam_npy")
    prepare_outputs(out_folders)

    dataset = ClsDatasetMSF(args.infer_list, data, args.cls_labels, scales=args.scales)
    for line in dataset.check_images(args.skip_bad_images):
        print(f"skipped {line}")

    def complete(name):
        return all(os.path.exists(p) for p in output_paths(args, name).values())

    listed = dataset.img_ids
    todo = images_to_do(listed, complete, args.overwrite)
    if not args.ignore_disk_check:
        check_free_space(output_bytes(args, dataset, todo, storage), "infer_seam.py", "--ignore_disk_check")
    dataset.img_ids = todo
    crf_alphas = tuple(args.crf_alphas) if args.out_crf else ()
    if crf_alphas:
        require_densecrf()

    # every output of an image (CAM, CRF maps, PNG) is written on the pool: CRF processes, else a thread
    def cams_on_device(items):
        for item in items:
            label = item["label"].to(device, non_blocking=True)
            keys = np.nonzero(item["label"].numpy() > 1e-5)[0].astype(np.int64)
            total = multiscale_cam(forward, item["images"], label, item["size"])
            # only the image's classes go to the host (3.5 of COCO's 80 per image on average)
            keys_host = torch.from_numpy(keys)
            if device.type == "cuda":  # pinned: the copy does not wait for the forward passes just queued
                keys_host = keys_host.pin_memory()
            yield (write_outputs, data.image_path(item["name"]), keys, output_paths(args, item["name"]),
                   args.out_cam_pred_alpha, crf_alphas, storage), total[keys_host.to(device, non_blocking=True)]

    infer_all(dataset, cams_on_device, args, device, crf=bool(crf_alphas), desc="infer_seam", listed=listed,
              complete=complete, folder=out_folders[0])


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
