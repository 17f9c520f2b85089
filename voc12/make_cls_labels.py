"""Rebuild the image-level label file from VOC `Annotations/<id>.xml`.

    python -m voc12.make_cls_labels --voc12_root ROOT [--list L1 L2 ...] --out voc12/cls_labels.txt

Without --list every xml in Annotations/ is used. Output ids are sorted (as in the shipped file).
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ET

import numpy as np

from voc12.labels import CAT_NAMES, class_index, load_img_id_list, names_to_multihot, write_cls_labels


def object_names_from_xml(xml_path):
    """The <name> of every <object> in a VOC annotation (difficult ones included, as published)."""
    if not os.path.isfile(xml_path):
        raise FileNotFoundError(f"{xml_path}: annotation file not found")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{xml_path}: not valid XML ({e})") from None
    # spaces as underscores: class names are one word ("traffic light" -> traffic_light)
    return ["_".join((obj.findtext("name") or "").split()) for obj in root.iter("object")]


def cls_labels_from_annotations(root, ids, cat_names=CAT_NAMES):
    """dict id -> float32 (len(cat_names),) multi-hot from `root/Annotations/<id>.xml` (VOC's 20
    classes by default)."""
    labels, index = {}, class_index(cat_names)
    for img_id in ids:
        xml_path = os.path.join(root, "Annotations", img_id + ".xml")
        labels[img_id] = names_to_multihot(object_names_from_xml(xml_path), xml_path, index)
    return labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voc12_root", required=True, help="VOC2012 folder with Annotations/")
    parser.add_argument("--list", nargs="+", default=None, help="split lists whose ids to label")
    parser.add_argument("--out", default="voc12/cls_labels.txt")
    args = parser.parse_args(argv)
    try:
        if args.list:
            ids = list(dict.fromkeys(i for path in args.list for i in load_img_id_list(path)))
        else:
            folder = os.path.join(args.voc12_root, "Annotations")
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{folder}: annotation folder not found")
            ids = sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".xml"))
        if not ids:
            raise ValueError(f"{args.voc12_root}: no annotations found")
        labels = cls_labels_from_annotations(args.voc12_root, ids)
        write_cls_labels(args.out, labels)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    n_obj = int(sum(np.count_nonzero(v) for v in labels.values()))
    print(f"wrote {len(labels)} images ({n_obj} image-class pairs) to {args.out}")


if __name__ == "__main__":
    main()
