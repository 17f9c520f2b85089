"""VOC class names (the default class list), split lists and the plain-text image-level label file.

`cls_labels.txt` holds one line per image: `<id> <classname> <classname> ...` (foreground
classes only, VOC order). It replaces the published pickled `cls_labels.npy`.
"""
import os

import numpy as np

from tool.engine.files import atomic_path

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
CAT_NAMES = CLASS_NAMES[1:]
NUM_CLASSES = len(CLASS_NAMES)


def numbered_lines(path, missing="no such list file"):
    """(line number, stripped text) of the non-empty lines of a text file; a missing one is a
    FileNotFoundError saying `missing`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {missing}")
    with open(path, encoding="utf-8") as f:
        return [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]


def load_img_id_list(path):
    """Image ids of a split list, in file order.

    Accepts bare ids (`2007_000032`) and the published `/JPEGImages/<id>.jpg /Seg.../<id>.png`
    line form, from which the stem of the first token is taken. An entry with a `..` component
    is an error: a list cannot name files outside the dataset folder.
    """
    ids = []
    for number, line in numbered_lines(path):
        first = line.split()[0]
        if ".." in first.replace("\\", "/").split("/"):
            raise ValueError(f"{path} line {number}: {first!r} points outside the dataset folder")
        ids.append(os.path.splitext(os.path.basename(first))[0])
    if not ids:
        raise ValueError(f"{path}: the image list is empty")
    return ids


def class_index(cat_names):
    """name -> label index, built once per file read (COCO's label file has 122k lines)."""
    return {name: i for i, name in enumerate(cat_names)}


def names_to_multihot(names, where, index):
    """Class names -> float32 (len(index),) multi-hot (`index`: class_index of the class names);
    `where` names the source in errors."""
    vec = np.zeros(len(index), np.float32)
    for name in names:
        if name not in index:
            raise ValueError(f"{where}: unknown class name {name!r}")
        vec[index[name]] = 1.0
    return vec


def load_cls_labels(path, cat_names=CAT_NAMES):
    """Read cls_labels.txt -> dict id -> float32 (len(cat_names),) multi-hot array."""
    labels, index = {}, class_index(cat_names)
    for lineno, line in numbered_lines(path):
        img_id, *names = line.split()
        labels[img_id] = names_to_multihot(names, f"{path}:{lineno}", index)
    if not labels:
        raise ValueError(f"{path}: no labels in file")
    return labels


def write_cls_labels(path, labels_dict, cat_names=CAT_NAMES):
    """Write dict id -> (len(cat_names),) multi-hot as cls_labels.txt (ids sorted, classes in label order)."""
    lines = []
    for img_id in sorted(labels_dict):
        vec = np.asarray(labels_dict[img_id]).reshape(-1)
        if vec.shape != (len(cat_names),):
            raise ValueError(f"{path}: label of {img_id} has shape {vec.shape}, expected ({len(cat_names)},)")
        names = [cat_names[i] for i in np.flatnonzero(vec > 0.5)]
        lines.append(" ".join([img_id, *names]))
    write_list(path, lines)


def write_text(path, text):
    """Write `text` to `path` (UTF-8) through a temporary file: a killed run leaves no half file."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_list(path, lines):
    """Write one line per item (a split list, classes.txt)."""
    write_text(path, "".join(line + "\n" for line in lines))
