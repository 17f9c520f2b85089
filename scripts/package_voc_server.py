"""Package VOC 2012 segmentations for the PASCAL VOC evaluation server.

    python scripts/package_voc_server.py PRED_DIR --split test|val [--list LIST] [--out OUT]
                                         [--voc12_root ROOT]

PRED_DIR holds one label PNG per image (<id>.png: palette or greyscale, class indices 0-20, as
infer_seg.py writes them). For every id of the list (default voc12/<split>.txt) this writes
OUT/results/VOC2012/Segmentation/comp6_<split>_cls/<id>.png, a VOC-palette PNG with the same
indices, and OUT/results.tar.gz, which holds that results/ tree and nothing else: the file to
upload. comp6 is the competition that allows training data beyond VOC's (here: ImageNet). OUT
defaults to voc_server_<split> beside PRED_DIR. With --voc12_root every prediction's size is
checked against its JPEG. A missing folder or prediction, a value outside 0-20 (255 included: the
server takes no void label) or a wrong size stops the script in one line naming it, before the
archive is written.
"""
import os
import sys
import tarfile

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.engine.files import atomic_path, save_label_png  # noqa: E402
from tool.engine.runtime import ArgumentParser, run_script  # noqa: E402
from tool.vis import load_label_png  # noqa: E402
from voc12.labels import CLASS_NAMES, load_img_id_list  # noqa: E402

VOC12_LISTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "voc12")


def server_folder(split):
    """The folder, inside the archive, that the server reads for `split`."""
    return os.path.join("results", "VOC2012", "Segmentation", f"comp6_{split}_cls")


def checked_label(path, image_path=None):
    """The (H, W) label map of `path`; ValueError naming the file when the server would refuse it."""
    label = load_label_png(path)
    if label.max(initial=0) >= len(CLASS_NAMES):
        bad = int(label[label >= len(CLASS_NAMES)][0])
        raise ValueError(f"{path}: label value {bad} outside 0..{len(CLASS_NAMES) - 1} (the server takes class "
                         "indices only, no 255)")
    if image_path is not None:
        if not os.path.isfile(image_path):
            raise FileNotFoundError(f"{image_path}: no such image (is --voc12_root the VOC2012 folder?)")
        with Image.open(image_path) as img:
            width, height = img.size
        if label.shape != (height, width):
            raise ValueError(f"{path}: {label.shape[1]}x{label.shape[0]} pixels, its image {width}x{height}")
    return label


def package(pred_dir, split, list_path, out, voc12_root=None):
    """Write the server's folder and archive; returns the archive's path."""
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError(f"{pred_dir}: no such folder of predictions")
    img_ids = load_img_id_list(list_path)
    if not img_ids:
        raise ValueError(f"{list_path}: empty list")
    missing = [i for i in img_ids if not os.path.isfile(os.path.join(pred_dir, f"{i}.png"))]
    if missing:
        raise FileNotFoundError(f"{pred_dir}: {len(missing)} of the {len(img_ids)} images of {list_path} have no "
                                f"prediction, e.g. {missing[0]}.png")
    for img_id in img_ids:  # every file checked before anything is written
        image = None if voc12_root is None else os.path.join(voc12_root, "JPEGImages", f"{img_id}.jpg")
        checked_label(os.path.join(pred_dir, f"{img_id}.png"), image)
    folder = server_folder(split)
    for img_id in img_ids:
        label = load_label_png(os.path.join(pred_dir, f"{img_id}.png"))
        save_label_png(os.path.join(out, folder, f"{img_id}.png"), label)
    archive = os.path.join(out, "results.tar.gz")
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for img_id in img_ids:  # the list's files only, whatever else the folder holds
            tar.add(os.path.join(out, folder, f"{img_id}.png"), arcname=os.path.join(folder, f"{img_id}.png"))
    return archive


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pred_dir", help="folder of <id>.png label maps (infer_seg.py --out_seg)")
    p.add_argument("--split", required=True, choices=("test", "val"), help="comp6_test_cls or comp6_val_cls")
    p.add_argument("--list", default=None, help="the image ids to package (default: voc12/<split>.txt)")
    p.add_argument("--out", default=None, help="output folder (default: voc_server_<split> beside pred_dir)")
    p.add_argument("--voc12_root", default=None, help="the VOC2012 folder: check each prediction's size")
    p.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")
    return p


def run(args):
    list_path = args.list or os.path.join(VOC12_LISTS, f"{args.split}.txt")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.pred_dir)), f"voc_server_{args.split}")
    archive = package(args.pred_dir, args.split, list_path, out, args.voc12_root)
    print(f"written: {archive} ({server_folder(args.split)}/, the ids of {list_path})")
    return 0


def main(argv=None):
    return run_script(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
