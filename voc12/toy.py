"""Synthetic PASCAL-VOC-style data set for end-to-end tests.

    python -m voc12.toy --out DIR [--kind voc12|coco14|folder] [--n_train_aug 600] [--n_train 120]
                        [--n_val 120] [--size 96] [--seed 0] [--n_classes 4] [--object_scale 0.15 0.6]

Writes JPEGImages/, SegmentationClass/ (train + val only, as in VOC, with 2-pixel 255 bands
along every instance outline), SegmentationClassAug/ (every id, no bands, like SBD masks),
Annotations/ (VOC xml), ImageSets/Segmentation/{train,val,trainval}.txt and top-level
train_aug.txt, train.txt (a subset of train_aug), val.txt (disjoint) and cls_labels.txt.

`--kind coco14` writes the MS-COCO 2014 files instead (generate_toy_coco), `--kind folder` a
VOC-style folder of `--n_classes` classes (generate_toy_folder; the demo's: 6 classes, objects
of 0.35-0.8 of the image side, a train_aug list).

Every class has its own shape, hue and texture (plain, stripes, checker) so that a small CNN
can tell them apart; backgrounds are low-saturation smooth noise with grey distractor blobs.
Each image comes from its own Generator seeded by (seed, split, index): fully deterministic.
"""
import argparse
import colorsys
import os
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
from PIL import Image

from tool.engine.files import atomic_path, save_label_png
from voc12.labels import CAT_NAMES, write_cls_labels, write_list, write_text
from voc12.make_cls_labels import cls_labels_from_annotations

# ---------------------------------------------------------------- class appearance


def _triangle(u, v):
    return (v <= 0.8) & (np.abs(u) <= (v + 1.0) * 0.55)


def _disc(u, v, cu, cv, r):
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def _box(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


# Shapes on local coordinates u (right), v (down) in [-1, 1]; one per class, all distinct.
SHAPES = (
    ("ellipse", lambda u, v: u * u + v * v <= 1.0),
    ("rectangle", lambda u, v: (np.abs(u) <= 0.95) & (np.abs(v) <= 0.6)),
    ("triangle", _triangle),
    ("ring", lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.5 ** 2)),
    ("plus", lambda u, v: ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (np.abs(u) <= 1) & (np.abs(v) <= 1)),
    ("star", lambda u, v: np.hypot(u, v) <= 0.4 + 0.6 * ((np.cos(5 * np.arctan2(v, u)) + 1) / 2) ** 2),
    ("diamond", lambda u, v: np.abs(u) + np.abs(v) <= 1.0),
    ("hexagon", lambda u, v: (np.abs(v) <= 0.87) & (np.abs(u) + np.abs(v) * 0.577 <= 1.0)),
    ("crescent", lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.75 ** 2)),
    ("half_disc", lambda u, v: (u * u + v * v <= 1.0) & (v >= -0.1)),
    ("L", lambda u, v: _box(u, v, -1, -0.35, -1, 1) | _box(u, v, -1, 1, 0.35, 1)),
    ("T", lambda u, v: _box(u, v, -1, 1, -1, -0.4) | _box(u, v, -0.3, 0.3, -1, 1)),
    ("comb", lambda u, v: _box(u, v, -1, 1, -1, -0.6)
     | ((np.abs(u) <= 1) & (v <= 1) & (np.abs(np.abs(u) - 0.7) <= 0.3) | (np.abs(u) <= 0.2)) & (v >= -1) & (v <= 1)),
    ("x", lambda u, v: ((np.abs(u - v) <= 0.45) | (np.abs(u + v) <= 0.45)) & (np.abs(u) <= 1) & (np.abs(v) <= 1)),
    ("frame", lambda u, v: (np.maximum(np.abs(u), np.abs(v)) <= 1) & (np.maximum(np.abs(u), np.abs(v)) >= 0.55)),
    ("inv_triangle", lambda u, v: _triangle(u, -v)),
    ("heart", lambda u, v: _disc(u, v, -0.45, -0.4, 0.52) | _disc(u, v, 0.45, -0.4, 0.52)
     | ((v >= -0.45) & (v <= 1) & (np.abs(u) <= (1 - v) * 0.65))),
    ("arrow", lambda u, v: _box(u, v, -1, 0.1, -0.25, 0.25) | ((u >= 0) & (u <= 1) & (np.abs(v) <= 1 - u))),
    ("hourglass", lambda u, v: (np.abs(v) <= 1) & (np.abs(u) <= np.abs(v) * 0.9 + 0.12)),
    ("dumbbell", lambda u, v: _disc(u, v, -0.62, 0, 0.38) | _disc(u, v, 0.62, 0, 0.38)
     | _box(u, v, -0.7, 0.7, -0.15, 0.15)),
)
TEXTURES = ("plain", "h_stripes", "v_stripes", "diag_stripes", "checker")
CLASS_STYLE = tuple(
    {"shape": SHAPES[c][1], "hue": c / len(CAT_NAMES), "texture": TEXTURES[c % len(TEXTURES)]}
    for c in range(len(CAT_NAMES))
)


def texture_pattern(name, pu, pv, period):
    """0/1 pattern on object-local pixel coordinates (so it turns with the object)."""
    half = period / 2.0
    if name == "plain":
        return np.zeros_like(pu)
    if name == "h_stripes":
        return np.floor(pv / half) % 2
    if name == "v_stripes":
        return np.floor(pu / half) % 2
    if name == "diag_stripes":
        return np.floor((pu + pv) / (half * 1.41)) % 2
    return (np.floor(pu / half) + np.floor(pv / half)) % 2


def hsv_rgb(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, np.clip(s, 0, 1), np.clip(v, 0, 1)), np.float32) * 255


# ---------------------------------------------------------------- drawing


def draw_background(rng, size):
    """Low-contrast, low-saturation smooth noise with small grey distractor blobs."""
    grey = rng.uniform(70, 190)
    coarse = rng.normal(0, 1, (4, 4, 1)) * 22 + rng.normal(0, 1, (4, 4, 3)) * 7
    img = grey + cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(2, 7)):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(0.02, 0.06, 2) * size
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        img[blob] = rng.uniform(40, 220) + rng.normal(0, 6, 3)
    return img


OBJECT_SCALE = (0.15, 0.6)  # object side as a fraction of the image side: VOC-like variety


def object_mask_and_texture(rng, cls, size, object_scale=OBJECT_SCALE):
    """A random placement of class `cls`: (mask (H, W) bool, texture (H, W) 0/1, unclipped area)."""
    side = rng.uniform(*object_scale) * size
    aspect = rng.uniform(0.8, 1.25)
    half_u, half_v = side / 2 * np.sqrt(aspect), side / 2 / np.sqrt(aspect)
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(-0.3, 0.3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pu = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    pv = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    style = CLASS_STYLE[cls]
    mask = style["shape"](pu / half_u, pv / half_v)
    # area of the shape if it were not clipped by the border, estimated on a local grid
    g = np.linspace(-1.2, 1.2, 49, dtype=np.float32)
    gu, gv = np.meshgrid(g, g)
    full_area = style["shape"](gu, gv).mean() * (2.4 * half_u) * (2.4 * half_v)
    period = max(4.0, size / 14.0)
    texture = texture_pattern(style["texture"], pu, pv, period)
    return mask, texture, full_area


def paint_object(rng, img, cls, mask, texture):
    style = CLASS_STYLE[cls]
    hue = style["hue"] + rng.uniform(-0.01, 0.01)
    light = hsv_rgb(hue, rng.uniform(0.75, 0.95), rng.uniform(0.85, 1.0))
    dark = hsv_rgb(hue, rng.uniform(0.75, 0.95), rng.uniform(0.4, 0.5))
    t = texture[mask][:, None]
    img[mask] = light * (1 - t) + dark * t


def boundary_band(instances):
    """Pixels whose 3x3 neighbourhood holds more than one instance id: a 2-pixel band."""
    padded = np.pad(instances, 1, mode="edge")
    h, w = instances.shape
    shifts = [padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    return np.max(shifts, axis=0) != np.min(shifts, axis=0)


def place_objects(rng, size, img, styles=None, max_tries=30, object_scale=OBJECT_SCALE):
    """Draw 1-3 objects of the class styles `styles` (default: all 20); later ones occlude
    earlier ones but leave each well visible.

    Returns (instances (H, W) int, 0 = background, k = k-th object; classes, list of style ids).
    """
    styles = range(len(CAT_NAMES)) if styles is None else styles
    n_objects = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    min_px = max(20, int(0.006 * size * size))
    instances = np.zeros((size, size), np.int32)
    full_visible, classes = [], []
    for _ in range(max_tries):
        if len(classes) == n_objects:
            break
        cls = styles[int(rng.integers(len(styles)))]
        mask, texture, full_area = object_mask_and_texture(rng, cls, size, object_scale)
        area = int(mask.sum())
        if area < max(min_px, 0.5 * full_area):
            continue
        remaining = [np.count_nonzero((instances == k + 1) & ~mask) for k in range(len(classes))]
        if any(r < max(min_px, 0.4 * a) for r, a in zip(remaining, full_visible)):
            continue
        paint_object(rng, img, cls, mask, texture)
        instances[mask] = len(classes) + 1
        classes.append(cls)
        full_visible.append(area)
    return instances, classes


def make_sample(rng, size, styles=None, object_scale=OBJECT_SCALE):
    """(uint8 RGB image, instance map, style id per instance); every instance survives the bands."""
    while True:
        img = draw_background(rng, size)
        instances, classes = place_objects(rng, size, img, styles, object_scale=object_scale)
        if not classes:
            continue
        inner = instances * ~boundary_band(instances)
        if all(np.any(inner == k + 1) for k in range(len(classes))):
            break
    img = img + rng.normal(0, 4, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), instances, classes


# ---------------------------------------------------------------- writing


def annotation_xml(img_id, size, instances, classes, cat_names=CAT_NAMES):
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = img_id + ".jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "SEAM synthetic VOC"
    size_el = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(size_el, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(instances == k + 1)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = cat_names[cls]
        ET.SubElement(obj, "pose").text = "Unspecified"
        touches = xs.min() == 0 or ys.min() == 0 or xs.max() == size - 1 or ys.max() == size - 1
        ET.SubElement(obj, "truncated").text = str(int(touches))
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        # VOC boxes are 1-based and inclusive
        for tag, value in (("xmin", xs.min()), ("ymin", ys.min()), ("xmax", xs.max()), ("ymax", ys.max())):
            ET.SubElement(box, tag).text = str(int(value) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_sample(out, img_id, img, instances, classes, cat_names=CAT_NAMES, seg_class=True, seg_class_aug=True):
    """One image of a VOC-style set: its JPEG, its xml annotation and its masks, SegmentationClass/
    (255 bands along the outlines) and SegmentationClassAug/ (no bands); `classes`: index per instance."""
    write_jpeg(os.path.join(out, "JPEGImages", img_id + ".jpg"), img)
    labels = np.array([0] + [c + 1 for c in classes], np.uint8)[instances]  # class ids
    if seg_class_aug:
        save_label_png(os.path.join(out, "SegmentationClassAug", img_id + ".png"), labels)
    if seg_class:
        banded = np.where(boundary_band(instances), 255, labels).astype(np.uint8)
        save_label_png(os.path.join(out, "SegmentationClass", img_id + ".png"), banded)
    xml = annotation_xml(img_id, img.shape[0], instances, classes, cat_names)
    write_text(os.path.join(out, "Annotations", img_id + ".xml"), xml)


def generate_toy_voc(out, n_train_aug=600, n_train=120, n_val=120, size=96, seed=0):
    """Write the synthetic set to `out`; returns dict split -> ids."""
    if not 0 < n_train <= n_train_aug:
        raise ValueError(f"--n_train must be in 1..n_train_aug ({n_train_aug}), got {n_train}")
    if n_val < 1 or size < 32:
        raise ValueError(f"need --n_val >= 1 and --size >= 32, got {n_val}, {size}")
    train_aug = [f"2007_{i:06d}" for i in range(1, n_train_aug + 1)]
    val = [f"2008_{i:06d}" for i in range(1, n_val + 1)]
    pick = np.random.default_rng([seed, 2]).choice(n_train_aug, n_train, replace=False)
    train = [train_aug[i] for i in sorted(pick)]
    train_set = set(train)
    for split_code, ids in ((0, train_aug), (1, val)):
        for index, img_id in enumerate(ids):
            rng = np.random.default_rng([seed, split_code, index])
            img, instances, classes = make_sample(rng, size)
            write_sample(out, img_id, img, instances, classes, seg_class=split_code == 1 or img_id in train_set)
    seg_sets = os.path.join(out, "ImageSets", "Segmentation")
    for name, ids in (("train", train), ("val", val), ("trainval", train + val)):
        write_list(os.path.join(seg_sets, name + ".txt"), ids)
    for name, ids in (("train_aug", train_aug), ("train", train), ("val", val)):
        write_list(os.path.join(out, name + ".txt"), ids)
    write_cls_labels(os.path.join(out, "cls_labels.txt"), cls_labels_from_annotations(out, train_aug + val))
    return {"train_aug": train_aug, "train": train, "val": val}


# ---------------------------------------------------------------- other data set kinds


def folder_classes(n_classes):
    """(name, style) of `n_classes` styles spread evenly over the 20 hues, named after their
    shapes: with 4, ellipse / star / L_shape / inv_triangle, a quarter turn apart; with 6, 0.15-0.2
    apart (more than the published ColorJitter's hue shift of 0.1)."""
    if not 1 <= n_classes <= len(SHAPES):
        raise ValueError(f"--n_classes must be 1..{len(SHAPES)}, got {n_classes}")
    styles = [round(i * len(SHAPES) / n_classes) for i in range(n_classes)]
    return tuple(("L_shape" if SHAPES[s][0] == "L" else SHAPES[s][0], s) for s in styles)


FOLDER_CLASSES = folder_classes(4)

# MS-COCO 2014's 80 categories with their (gapped) ids; the toy COCO set draws 20 of them
COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip
COCO_STYLE_CATEGORY = {c: COCO_CATEGORIES[4 * c][0] for c in range(len(CAT_NAMES))}  # style -> category id


def write_jpeg(path, img):
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="JPEG", quality=95)


def generate_toy_folder(out, n_train=24, n_val=12, size=96, seed=0, n_classes=4, n_train_aug=0,
                        object_scale=OBJECT_SCALE):
    """A VOC-style folder (voc12.dataset kind `folder`) of `n_classes` classes (folder_classes):
    classes.txt, JPEGImages/, SegmentationClass/ (every id, 255 bands), Annotations/ (xml),
    train.txt, val.txt; no cls_labels.txt (labels come from the xml). `n_train_aug` > 0 adds
    train_aug.txt of that many images, train.txt being its first `n_train` (VOC's design).
    `object_scale`: range of object sides as fractions of the image side. Returns dict split -> ids."""
    if n_train_aug and not 0 < n_train <= n_train_aug or n_train_aug < 0:
        raise ValueError(f"--n_train must be in 1..n_train_aug ({n_train_aug}), got {n_train}")
    if not 0.1 <= object_scale[0] <= object_scale[1] <= 1:
        raise ValueError(f"--object_scale must satisfy 0.1 <= MIN <= MAX <= 1, got {object_scale}")
    classes_used = folder_classes(n_classes)
    names = [n for n, _ in classes_used]
    styles = [s for _, s in classes_used]
    write_list(os.path.join(out, "classes.txt"), names)
    train_ids = [f"img_{i:04d}" for i in range(n_train_aug or n_train)]
    val_ids = [f"img_{i:04d}" for i in range(len(train_ids), len(train_ids) + n_val)]
    for code, ids in enumerate((train_ids, val_ids)):
        for index, img_id in enumerate(ids):
            rng = np.random.default_rng([seed, 10 + code, index])
            img, instances, drawn = make_sample(rng, size, styles, object_scale)
            write_sample(out, img_id, img, instances, [styles.index(s) for s in drawn], names, seg_class_aug=False)
    splits = {"train_aug": train_ids} if n_train_aug else {}
    splits.update(train=train_ids[:n_train], val=val_ids)  # val.txt last: the demo's "finished" mark
    for name, ids in splits.items():
        write_list(os.path.join(out, name + ".txt"), ids)
    return splits


def rle_counts(mask):
    """COCO's uncompressed RLE of a bool mask: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if not flat[0] else [0, *runs]


def polygons(mask):
    """The outer outlines of a bool mask as COCO polygons [x0, y0, x1, y1, ...] (pixel centres)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(c.reshape(-1, 2) + 0.5).reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def coco_annotation(ann_id, image_id, category_id, mask, crowd, as_rle):
    ys, xs = np.nonzero(mask)
    polys = [] if crowd or as_rle else polygons(mask)
    segmentation = polys or {"counts": rle_counts(mask), "size": list(mask.shape)}
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
            "area": float(mask.sum()), "iscrowd": int(crowd),
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]}


def generate_toy_coco(out, n_train=24, n_val=12, size=96, seed=0):
    """An MS-COCO-2014-format set: train2014/ and val2014/ (COCO_<split>_<12-digit id>.jpg) and
    annotations/instances_<split>.json with the 80 real categories (20 drawn), polygons, RLE
    (every fifth object) and crowd regions (the last of several objects in every fourth image);
    every eighth image has no annotation (COCO has such images; WSSS lists leave them out).
    Run `python -m voc12.make_coco` on it for masks, lists and labels. Returns dict split -> ids."""
    import json

    categories = [{"id": i, "name": n, "supercategory": "toy"} for i, n in COCO_CATEGORIES]
    splits, ann_id = {}, 1
    for code, (split, n, first_id) in enumerate((("train2014", n_train, 1), ("val2014", n_val, 500_000))):
        images, annotations, ids = [], [], []
        for index in range(n):
            image_id = first_id + index
            name = f"COCO_{split}_{image_id:012d}"
            rng = np.random.default_rng([seed, 20 + code, index])
            if index % 8 == 7:
                img = np.clip(np.round(draw_background(rng, size)), 0, 255).astype(np.uint8)
                instances, drawn = np.zeros((size, size), np.int32), []
            else:
                img, instances, drawn = make_sample(rng, size)
            write_jpeg(os.path.join(out, split, name + ".jpg"), img)
            images.append({"id": image_id, "file_name": name + ".jpg", "height": size, "width": size})
            for k, style in enumerate(drawn):
                crowd = index % 4 == 1 and len(drawn) > 1 and k == len(drawn) - 1
                annotations.append(coco_annotation(ann_id, image_id, COCO_STYLE_CATEGORY[style], instances == k + 1,
                                                   crowd, as_rle=ann_id % 5 == 0))
                ann_id += 1
            ids.append(name)
        payload = {"info": {"description": "SEAM synthetic COCO"}, "licenses": [], "images": images,
                   "annotations": annotations, "categories": categories}
        write_text(os.path.join(out, "annotations", f"instances_{split}.json"), json.dumps(payload))
        splits[split] = ids
    return splits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--kind", default="voc12", choices=("voc12", "coco14", "folder"),
                        help="VOC2012 layout (20 classes; its lists and cls_labels.txt are in --out, and the "
                             "scripts default to VOC's own: give them --train_list / --infer_list / --cls_labels), "
                             "COCO 2014 files (json; run voc12.make_coco after) or a VOC-style folder of --n_classes "
                             "classes")
    parser.add_argument("--n_classes", type=int, default=4, help="folder only: classes (1-20)")
    parser.add_argument("--n_train_aug", type=int, default=None,
                        help="voc12 (default 600) and folder (default none: no train_aug.txt)")
    parser.add_argument("--n_train", type=int, default=120)
    parser.add_argument("--n_val", type=int, default=120)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--object_scale", type=float, nargs=2, default=OBJECT_SCALE, metavar=("MIN", "MAX"),
                        help="folder only: object sides as fractions of the image side")
    args = parser.parse_args(argv)
    try:
        if args.kind == "voc12":
            n_train_aug = 600 if args.n_train_aug is None else args.n_train_aug
            splits = generate_toy_voc(args.out, n_train_aug, args.n_train, args.n_val, args.size, args.seed)
        elif args.kind == "coco14":
            splits = generate_toy_coco(args.out, args.n_train, args.n_val, args.size, args.seed)
        else:
            splits = generate_toy_folder(args.out, args.n_train, args.n_val, args.size, args.seed,
                                         args.n_classes, args.n_train_aug or 0, tuple(args.object_scale))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(" ".join(f"{k}:{len(v)}" for k, v in splits.items()) + f" images written to {args.out}")


if __name__ == "__main__":
    main()
