"""What a data set is, for every stage: its class names, where its images and masks lie, its
split lists, its image-level labels and its palette. Scripts take `--dataset KIND --data_root DIR`.

voc12   PASCAL VOC 2012 (the default): DIR/JPEGImages/<id>.jpg, masks in SegmentationClassAug/
        falling back to SegmentationClass/; the lists and labels ship in this package (voc12/).
coco14  MS-COCO 2014 prepared by `python -m voc12.make_coco`: DIR/train2014/ and DIR/val2014/ as
        downloaded, DIR/SegmentationClass/<id>.png, DIR/{classes,train,val,cls_labels}.txt.
folder  any VOC-style folder: DIR/classes.txt, DIR/JPEGImages/<id>.jpg, SegmentationClass/
        (optional: evaluation and ground-truth training need it), lists DIR/<split>.txt or
        DIR/ImageSets/Segmentation/<split>.txt, labels DIR/cls_labels.txt or, without it, from
        DIR/Annotations/<id>.xml or else from the masks.

`classes.txt`: one foreground class name per line (no spaces), in label order; a first line
`background` is allowed and skipped. Class 0 is background everywhere. The palette is VOC's
colour map (256 entries) for every kind.
Split roles: `train_aug` (what the training stages learn from; falls back to `train`), `train`
(where CAMs and pseudo labels are scored) and `val`.
"""
import functools
import os
from dataclasses import dataclass

import numpy as np

from tool.engine.runtime import group, run_script
from tool.vis import load_label_png
from voc12.labels import CLASS_NAMES, load_cls_labels, numbered_lines

KINDS = ("voc12", "coco14", "folder")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class DataSet:
    kind: str
    root: str
    class_names: tuple  # [0] is background
    list_dirs: tuple  # folders searched for <split>.txt
    cls_labels: str = None  # label file; None: derived from Annotations/ or the masks
    # how infer_seam stores CAM and CRF maps (tool.engine.camfile): VOC float32 (exact, as published),
    # COCO uint8 (122k images: ~0.3 GB per 1,000, scripts/bench_camsize.py), folders float16
    cam_storage: str = "float16"

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def cat_names(self):
        return self.class_names[1:]

    def image_path(self, img_id):
        if self.kind == "coco14":  # COCO_train2014_000000000009 lies in train2014/
            parts = img_id.split("_")
            if len(parts) == 3 and parts[0] == "COCO":
                return os.path.join(self.root, parts[1], img_id + ".jpg")
        return os.path.join(self.root, "JPEGImages", img_id + ".jpg")

    def mask_path(self, img_id, label_dir=None):
        return mask_path(self.root, img_id, label_dir)

    @functools.cached_property  # looked up once, not per validation image
    def eval_mask_dir(self):
        """The folder validation scores against: SegmentationClass/, the masks of the published
        evaluation (evaluation.py --gt_dir); None for a data set without one (validation then
        falls back to mask_path's masks, and says so)."""
        path = os.path.join(self.root, "SegmentationClass")
        return path if os.path.isdir(path) else None

    def eval_mask_path(self, img_id):
        """The mask of `img_id` that evaluation.py scores against (see eval_mask_dir)."""
        return mask_path(self.root, img_id, self.eval_mask_dir)

    def eval_mask_note(self):
        """One line for the training log: which masks validation reads."""
        if self.eval_mask_dir is None:
            return (f"validation masks: {self.root} has no SegmentationClass/: falling back to SegmentationClassAug/ "
                    "(not what evaluation.py is given by the published scripts)")
        return f"validation masks: {self.eval_mask_dir} (evaluation.py --gt_dir)"

    def list_path(self, split):
        """The list file of a split role; a missing one is a FileNotFoundError naming where it looked."""
        names = (split, "train") if split == "train_aug" else (split,)
        for name in names:
            for folder in self.list_dirs:
                path = os.path.join(folder, name + ".txt")
                if os.path.isfile(path):
                    return path
        raise FileNotFoundError(f"{self.root}: no {split} list ({' or '.join(n + '.txt' for n in names)} in "
                                f"{', '.join(self.list_dirs)})")

    def labels(self, img_ids, cls_labels=None):
        """dict id -> float32 (num_classes - 1,) multi-hot for `img_ids`, from `cls_labels` (a file),
        else the data set's label file, else its XML annotations or masks."""
        path = cls_labels or self.cls_labels
        if path:
            return load_cls_labels(path, self.cat_names)
        if img_ids is None:
            raise ValueError(f"{self.root}: no cls_labels.txt; labels from Annotations/ or masks need image ids")
        if os.path.isdir(os.path.join(self.root, "Annotations")):
            from voc12.make_cls_labels import cls_labels_from_annotations

            return cls_labels_from_annotations(self.root, img_ids, self.cat_names)
        return {i: labels_from_mask(self.mask_path(i), self.num_classes) for i in img_ids}


def mask_path(root, img_id, label_dir=None):
    """`label_dir/<id>.png` if given, else root/SegmentationClassAug/ falling back to SegmentationClass/."""
    if label_dir is not None:
        return os.path.join(label_dir, img_id + ".png")
    aug = os.path.join(root, "SegmentationClassAug", img_id + ".png")
    if os.path.isfile(aug):
        return aug
    return os.path.join(root, "SegmentationClass", img_id + ".png")


def labels_from_mask(path, num_classes):
    """Multi-hot of the foreground classes present in a mask PNG (255 ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no cls_labels.txt, no Annotations/ and no mask to take labels from")
    values = np.unique(load_label_png(path))
    values = values[(values != 255) & (values != 0)]
    if values.size and values.max() >= num_classes:
        raise ValueError(f"{path}: mask value {int(values.max())} outside 0..{num_classes - 1} and 255")
    vec = np.zeros(num_classes - 1, np.float32)
    vec[values.astype(np.int64) - 1] = 1.0
    return vec


def read_class_names(path):
    """classes.txt -> ("background", name, ...)."""
    names = [line for _, line in numbered_lines(path, "class list not found")]
    if names and names[0] == "background":
        names = names[1:]
    for name in names:
        if len(name.split()) != 1 or name == "background":
            raise ValueError(f"{path}: bad class name {name!r} (one word, not 'background')")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a class name appears twice")
    if not 1 <= len(names) <= 254:
        raise ValueError(f"{path}: {len(names)} classes; need 1..254 (255 marks ignored pixels)")
    return ("background", *names)


def open_dataset(kind, root, cls_labels=None):
    """The DataSet of `kind` at `root`; FileNotFoundError / ValueError naming what is missing."""
    if kind not in KINDS:
        raise ValueError(f"--dataset {kind}: choose one of {', '.join(KINDS)}")
    if kind == "voc12":
        if not os.path.isdir(os.path.join(root, "JPEGImages")):
            raise FileNotFoundError(f"{root}: no JPEGImages folder (is --voc12_root a VOC2012 folder?)")
        return DataSet(kind, root, CLASS_NAMES, (PACKAGE_DIR,),
                       cls_labels or os.path.join(PACKAGE_DIR, "cls_labels.txt"), cam_storage="float32")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: data folder not found")
    classes = os.path.join(root, "classes.txt")
    if kind == "coco14" and not os.path.isfile(classes):
        raise FileNotFoundError(f"{classes}: not found; prepare the folder with python -m voc12.make_coco")
    if kind == "folder" and not os.path.isdir(os.path.join(root, "JPEGImages")):
        raise FileNotFoundError(f"{root}: no JPEGImages folder (a folder data set is VOC-style)")
    label_file = os.path.join(root, "cls_labels.txt")
    return DataSet(kind, root, read_class_names(classes),
                   (root, os.path.join(root, "ImageSets", "Segmentation")),
                   cls_labels or (label_file if os.path.isfile(label_file) else None),
                   cam_storage="uint8" if kind == "coco14" else "float16")


TRAIN_LIST_HELP = "default: the data set's train_aug list (voc12/train_aug.txt for VOC; train.txt without one)"
EVAL_LIST_HELP = "default: the data set's train list (voc12/train.txt for VOC)"
NUM_CLASSES_HELP = "default: the data set's class count, background included (21 for VOC); another value is an error"


def add_dataset_flags(parser, labels=False, root_required=True):
    data = group(parser, "data")
    data.add_argument("--dataset", default="voc12", choices=KINDS, help="data set kind (voc12/dataset.py)")
    data.add_argument("--data_root", "--voc12_root", dest="data_root", required=root_required,
                      help="the data set's folder (VOC2012 for --dataset voc12; evaluation.py reads it for "
                           "coco14 and folder only: VOC's class names are built in)")
    if labels:
        data.add_argument("--cls_labels", default=None,
                          help="image-level labels (plain text); default: the data set's (voc12/cls_labels.txt "
                               "for VOC)")


def dataset_from_args(args):
    return open_dataset(args.dataset, args.data_root, getattr(args, "cls_labels", None))


def split_list(path, data, split):
    """A list flag's value: the path given, else the data set's list of `split`."""
    return path if path is not None else data.list_path(split)


def check_num_classes(data, num_classes, what):
    """`num_classes` of a flag or checkpoint must be the data set's class count."""
    if num_classes is not None and num_classes != data.num_classes:
        raise ValueError(f"{what}: {num_classes} classes, but the {data.kind} data set at {data.root} has "
                         f"{data.num_classes} (background included)")
    return data.num_classes


def main(argv=None):
    """`python -m voc12.dataset --dataset K --data_root D --list SPLIT`: print the split's list
    path (the stage scripts' default lists come from here)."""
    import argparse

    p = argparse.ArgumentParser(description="print a data set's split list path")
    add_dataset_flags(p)
    p.add_argument("--list", required=True, help="split role: train_aug, train or val")
    run_script(p, lambda args: print(dataset_from_args(args).list_path(args.list)), argv, status=2)


if __name__ == "__main__":
    main()
