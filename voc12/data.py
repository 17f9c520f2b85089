"""PyTorch datasets over a data set (voc12.dataset.DataSet: VOC 2012, COCO 2014 or a VOC-style
folder). Each takes a DataSet or, as the published code, a VOC2012 folder path.

Randomness: the training transforms draw from Python's global `random` (resize, flip, crop,
scale) and torch's global RNG (colour jitter); the training loop (tool.engine.training.SeededItems)
seeds them per item from (seed, epoch, index), so runs and resumes are reproducible.

Items:
- ImageDataset:    (name, image CHW float32 tensor), no augmentation
- ClsDataset:      (name, image CHW float32 tensor, label float32 (num_classes - 1,) tensor)
- ClsDatasetMSF:   dict name, images, label, size (see its docstring)
- AffDataset:      (name, image CHW float32 tensor, (bg_pos, fg_pos, neg) float32 (n_offsets, P))
- SegDataset:      (name, image CHW float32 tensor, label HxW int64 tensor; 255 = ignore)
- SegInferDataset: dict name, images, size
"""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tool import imutils
from tool.affinity import affinity_labels_in_radius, confident_label_from_scores, effective_radius
from tool.engine.camfile import CRF_ARRAYS, load_crf, map_file_problem
from tool.vis import label_png_problem, load_label_png
from voc12.dataset import DataSet, open_dataset
from voc12.labels import load_img_id_list

# ---------------------------------------------------------------- file readers


def load_image(path):
    """RGB PIL image (fully read, file closed). Grayscale, palette, RGBA and CMYK files convert
    to RGB; EXIF orientation is ignored, as by the published code (PIL's plain open)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:  # truncated, corrupt, not an image
        raise ValueError(f"{path}: cannot decode the image ({e})") from None


def image_problem(path):
    """Why `path` cannot be an input image (missing, empty, no decodable header), else None.
    Reads the header only: milliseconds per file, so a whole list is checked before work starts."""
    if not os.path.isfile(path):
        return "image not found"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 (the header is parsed on open; size is what we need from it)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    return None


# ---------------------------------------------------------------- transforms


def eval_transform(img):
    """PIL RGB -> normalised CHW float32 tensor, no augmentation."""
    return torch.from_numpy(imutils.hwc_to_chw(imutils.normalize(img)))


class TrainClsTransform:
    """SEAM stage-1 augmentation, in the order of the published train_SEAM.py.

    Random long side in [resize_long] (bicubic), horizontal flip, colour jitter, normalise,
    random crop `crop_size` (padding 0 after normalisation), CHW float32 tensor.
    Picklable; randomness from the global RNGs (see the module docstring).
    """

    def __init__(self, crop_size=448, resize_long=(448, 768), color_jitter=imutils.PUBLISHED_COLOR_JITTER):
        self.resize = imutils.RandomResizeLong(*resize_long)
        self.jitter = imutils.color_jitter(color_jitter)
        self.crop_size = crop_size

    def __call__(self, img):
        img = self.resize(img)
        img = imutils.random_hflip(img)
        img = self.jitter(img)
        arr = imutils.random_crop(imutils.normalize(img), self.crop_size)
        return torch.from_numpy(imutils.hwc_to_chw(arr))


def multiscale_flip_images(img, scales, normalize_first=False):
    """Per scale a (2, 3, h_s, w_s) float32 tensor: the image resized (bicubic) to
    (round(W*s), round(H*s)), normalised, and its horizontal flip (the SEAM CAM inference).
    `normalize_first`: the authors' segmentation test order instead, normalise the full image
    first, then resize the float image (OpenCV bicubic, fx = fy = s)."""
    if normalize_first:
        arr = imutils.normalize(img)
        arrays = (imutils.cv2_rescale(arr, s, order=3) for s in scales)
    else:
        arrays = (imutils.normalize(imutils.pil_rescale(img, s, order=3)) for s in scales)
    # generators: one scale's intermediates at a time (a worker holds every scale's output anyway)
    return [torch.from_numpy(np.ascontiguousarray(np.stack([a, a[:, ::-1]]).transpose(0, 3, 1, 2), dtype=np.float32))
            for a in arrays]


# ---------------------------------------------------------------- datasets


class _ImageListDataset(Dataset):
    def __init__(self, img_id_list_file, data):
        # a DataSet, or a VOC2012 folder path (the published `voc12_root` argument)
        self.data = data if isinstance(data, DataSet) else open_dataset("voc12", data)
        self.img_ids = load_img_id_list(img_id_list_file)

    def __len__(self):
        return len(self.img_ids)

    def map_files(self, name):
        """The per-image files besides the image that an item reads (CRF maps, label PNGs), as
        (path, problem function) pairs: check_images checks those that exist."""
        return []

    def check_images(self, skip_bad=False, map_files=None):
        """Check every listed image's file and header, and its map files (`map_files`, default the
        dataset's own), before any work. A bad one is a ValueError naming it, or with `skip_bad`
        the list goes on without it; returns the skipped "path: reason" lines. (A file truncated
        after its header still fails when decoded.)"""
        map_files = map_files or self.map_files
        bad = []
        for name in self.img_ids:
            path = self.data.image_path(name)
            problem = image_problem(path)
            for map_path, map_problem in [] if problem else map_files(name):
                problem = os.path.isfile(map_path) and map_problem(map_path)
                if problem:
                    path = map_path
                    break
            if problem:
                bad.append((name, f"{path}: {problem}"))
        if bad and not skip_bad:
            raise ValueError(f"{bad[0][1]} ({len(bad)} of {len(self.img_ids)} listed images unusable; "
                             "--skip_bad_images leaves them out)")
        dropped = {name for name, _ in bad}
        self.img_ids = [n for n in self.img_ids if n not in dropped]
        if not self.img_ids:
            raise ValueError("no usable image left in the list")
        return [line for _, line in bad]

    def _image(self, idx):
        name = self.img_ids[idx]
        return name, load_image(self.data.image_path(name))


class ImageDataset(_ImageListDataset):
    """(name, normalised CHW float32 tensor) at the original size, no augmentation."""

    def __getitem__(self, idx):
        name, img = self._image(idx)
        return name, eval_transform(img)


class ClsDataset(_ImageListDataset):
    """(name, image tensor, float32 (num_classes - 1,) label); transform: PIL -> tensor (default
    eval_transform). Labels from `cls_labels_file`, else the data set's (voc12.dataset)."""

    def __init__(self, img_id_list_file, data, cls_labels_file=None, transform=None):
        super().__init__(img_id_list_file, data)
        all_labels = self.data.labels(self.img_ids, cls_labels_file)
        missing = [i for i in self.img_ids if i not in all_labels]
        if missing:
            source = cls_labels_file or self.data.cls_labels or self.data.root
            raise ValueError(f"{source}: no labels for {len(missing)} ids of "
                             f"{img_id_list_file}, e.g. {missing[0]}")
        self.labels = {i: all_labels[i] for i in self.img_ids}
        self.transform = eval_transform if transform is None else transform

    def __getitem__(self, idx):
        name, img = self._image(idx)
        return name, self.transform(img), torch.from_numpy(self.labels[name].copy())


class ClsDatasetMSF(ClsDataset):
    """Multi-scale + flip inference items: dict with
    name (str), images (list per scale of (2, 3, round(H*s), round(W*s)) float32 tensors,
    index 0 the image, 1 its horizontal flip), label (float32 (num_classes - 1,) tensor),
    size ((H, W) of the original image, ints)."""

    def __init__(self, img_id_list_file, data, cls_labels_file=None, scales=(0.5, 1.0, 1.5, 2.0)):
        super().__init__(img_id_list_file, data, cls_labels_file)
        self.scales = tuple(scales)

    def __getitem__(self, idx):
        name, img = self._image(idx)
        return {"name": name, "images": multiscale_flip_images(img, self.scales), "size": (img.size[1], img.size[0]),
                "label": torch.from_numpy(self.labels[name].copy())}


class SegInferDataset(_ImageListDataset):
    """Multi-scale + flip items for segmentation inference: dict name, images, size (as
    ClsDatasetMSF, without label; see multiscale_flip_images' `normalize_first` for the order)."""

    def __init__(self, img_id_list_file, data, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)):
        super().__init__(img_id_list_file, data)
        self.scales = tuple(scales)

    def __getitem__(self, idx):
        name, img = self._image(idx)
        images = multiscale_flip_images(img, self.scales, normalize_first=True)
        return {"name": name, "images": images, "size": (img.size[1], img.size[0])}


class AffDataset(_ImageListDataset):
    """AffinityNet training items: (name, image tensor, (bg_pos, fg_pos, neg)).

    Order of the published train_aff.py: colour jitter; random crop of the image and the stacked
    la/ha CRF score maps with one window (both padded with 0 *before* normalisation, so padded
    image pixels normalise to -mean/std as published); normalise; joint horizontal flip.
    The crop's score maps are then 8x8 average-pooled and argmax'ed, which is the published
    reading of "labels at 1/8 resolution": pooling the scores (not the hard labels) lets a
    cell's label be the class with the most mass; cells with no score at all (fully in the
    padding) become ignore (255), as do la-background cells that ha does not call background.
    The radius shrinks on small grids exactly as the network does (`effective_radius`).
    """

    def __init__(self, img_id_list_file, data, la_crf_dir, ha_crf_dir, crop_size=448, radius=5):
        super().__init__(img_id_list_file, data)
        self.la_crf_dir = la_crf_dir
        self.ha_crf_dir = ha_crf_dir
        self.crop_size = crop_size
        self.radius = radius
        self.jitter = imutils.color_jitter()

    def crf_paths(self, name):
        return os.path.join(self.la_crf_dir, name + ".npz"), os.path.join(self.ha_crf_dir, name + ".npz")

    def map_files(self, name):
        return [(path, lambda p: map_file_problem(p, CRF_ARRAYS)) for path in self.crf_paths(name)]

    def __getitem__(self, idx):
        name, img = self._image(idx)
        la_path, ha_path = self.crf_paths(name)
        keys, la = load_crf(la_path, self.data.num_classes)
        ha_keys, ha = load_crf(ha_path, self.data.num_classes)
        if not np.array_equal(keys, ha_keys):
            raise ValueError(f"{ha_path}: keys {ha_keys.tolist()} differ from {la_path} {keys.tolist()}")
        size_hw = (img.size[1], img.size[0])
        for path, scores in ((la_path, la), (ha_path, ha)):
            if scores.shape[1:] != size_hw:
                raise ValueError(f"{path}: scores are {scores.shape[1:]}, image is {size_hw}")
        img = np.asarray(self.jitter(img))
        scores = np.concatenate([la, ha]).transpose(1, 2, 0)
        img, scores = imutils.random_crop(img, self.crop_size, scores, label_fill=0.0)
        img = imutils.normalize(img)
        img, scores = imutils.random_hflip(img, scores)
        pooled = imutils.avg_pool_hw(scores, 8).transpose(2, 0, 1)
        la_pooled, ha_pooled = np.split(pooled, 2)
        label = confident_label_from_scores(la_pooled, ha_pooled, keys)
        radius = effective_radius(self.radius, label.shape)
        pair_labels = tuple(torch.from_numpy(a) for a in affinity_labels_in_radius(label, radius))
        return name, torch.from_numpy(imutils.hwc_to_chw(img)), pair_labels


class SegDataset(_ImageListDataset):
    """Segmentation training items: (name, image CHW float32 tensor, label HxW int64 tensor).

    The authors' order (OpenCV on the uint8 RGB image): HSV shift (each of H, S, V by an integer
    in [-hsv_shift, hsv_shift]), joint horizontal flip, joint random scale in [scale_range)
    (image bicubic, label nearest), normalise, joint random crop (an image smaller than the
    crop sits at a random offset; padding: image 0 after normalisation, label 255).
    A label value other than 0..num_classes-1 (the data set's) and 255 is a ValueError naming the
    file (checked here, on the loader workers, so the training step need not read labels back from
    the GPU).
    """

    def __init__(self, img_id_list_file, data, label_dir=None, crop_size=448, scale_range=(0.5, 1.5), hsv_shift=10):
        super().__init__(img_id_list_file, data)
        self.label_dir = label_dir
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.hsv_shift = (hsv_shift,) * 3

    def map_files(self, name):
        return [(self.data.mask_path(name, self.label_dir), label_png_problem)]

    def __getitem__(self, idx):
        name, img = self._image(idx)
        path = self.data.mask_path(name, self.label_dir)
        label = load_label_png(path)
        img = np.asarray(img)
        if label.shape != img.shape[:2]:
            raise ValueError(f"{path}: label is {label.shape}, image is {img.shape[:2]}")
        bad = (label != 255) & (label >= self.data.num_classes)
        if bad.any():
            raise ValueError(f"{path}: label value {int(label[bad][0])} outside 0..{self.data.num_classes - 1} and 255")
        img = imutils.random_hsv_shift(img, self.hsv_shift)
        img, label = imutils.random_hflip(img, label)
        scale = imutils.rand_uniform(*self.scale_range)
        img = imutils.cv2_rescale(img, scale, order=3)
        label = imutils.cv2_rescale(label, scale, order=0)
        img, label = imutils.random_crop(imutils.normalize(img), self.crop_size, label)
        return name, torch.from_numpy(imutils.hwc_to_chw(img)), torch.from_numpy(label.astype(np.int64))
