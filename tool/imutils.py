"""Image augmentations of the published SEAM code, on PIL images and HWC numpy arrays.

Randomness: every random helper draws from Python's global `random` module, which the training
loop seeds per item (tool.engine.training.SeededItems) and PyTorch's DataLoader per worker.
"""
import random

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN, _STD = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)

# order codes as in the published pil_rescale (scipy-style interpolation orders)
_PIL_RESAMPLE = {0: Image.NEAREST, 1: Image.BILINEAR, 2: Image.BILINEAR, 3: Image.BICUBIC}


def rand_int(low, high):
    """Uniform integer in [low, high], both inclusive."""
    return random.randint(low, high)


def rand_uniform(low, high):
    return random.uniform(low, high)


def rand_coin():
    return random.random() < 0.5


def resize_long(img, target_long):
    """Bicubic resize of a PIL image so that its long side is `target_long`, aspect kept."""
    w, h = img.size
    if w < h:
        size = (int(round(w * target_long / h)), target_long)
    else:
        size = (target_long, int(round(h * target_long / w)))
    return img.resize(size, resample=Image.BICUBIC)


class RandomResizeLong:
    """Resize the long side to a random integer in [min_long, max_long] (inclusive), bicubic."""

    def __init__(self, min_long, max_long):
        if not 0 < min_long <= max_long:
            raise ValueError(f"RandomResizeLong: need 0 < min_long <= max_long, got {min_long}, {max_long}")
        self.min_long = min_long
        self.max_long = max_long

    def __call__(self, img):
        return resize_long(img, rand_int(self.min_long, self.max_long))


def hflip(img):
    """Horizontal flip of a PIL image or an HW / HWC array."""
    if isinstance(img, Image.Image):
        return img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.ascontiguousarray(np.asarray(img)[:, ::-1])


def random_hflip(*images):
    """Flip all given images together with probability 0.5; one image in, one image out."""
    flip = rand_coin()
    out = tuple(hflip(im) if flip else im for im in images)
    return out[0] if len(out) == 1 else out


def normalize(img):
    """RGB uint8 (PIL or HWC array) -> float32 HWC: (x / 255 - mean) / std per channel (ImageNet's, as
    published: every item of voc12.data is normalised by it)."""
    arr = np.asarray(img, dtype=np.float32)[..., :3]
    return ((arr / 255.0 - _MEAN) / _STD).astype(np.float32)


def crop_window(h, w, cropsize):
    """Random window of the published RandomCrop for an h x w input.

    Returns (cont_top, cont_left, img_top, img_left, ch, cw): the input region
    [img_top:img_top+ch, img_left:img_left+cw] goes to the output at (cont_top, cont_left).
    A side longer than cropsize is cut at a random offset; a shorter one is placed at one.
    """
    ch, cw = min(cropsize, h), min(cropsize, w)
    w_space, h_space = w - cropsize, h - cropsize
    if w_space > 0:
        cont_left, img_left = 0, rand_int(0, w_space)
    else:
        cont_left, img_left = rand_int(0, -w_space), 0
    if h_space > 0:
        cont_top, img_top = 0, rand_int(0, h_space)
    else:
        cont_top, img_top = rand_int(0, -h_space), 0
    return cont_top, cont_left, img_top, img_left, ch, cw


def apply_crop(arr, window, cropsize, fill, dtype=None):
    """Cut `window` (from crop_window) out of an HW/HWC array into a cropsize^2 container."""
    arr = np.asarray(arr)
    cont_top, cont_left, img_top, img_left, ch, cw = window
    out = np.full((cropsize, cropsize) + arr.shape[2:], fill, dtype=dtype or arr.dtype)
    out[cont_top:cont_top + ch, cont_left:cont_left + cw] = arr[img_top:img_top + ch, img_left:img_left + cw]
    return out


def random_crop(img, cropsize, label=None, label_fill=255):
    """The published RandomCrop of an HWC image: a float32 cropsize x cropsize container filled
    with 0. With an HW(C) `label`: (image, label) cut with one window, the label keeping its dtype
    (filled with `label_fill`)."""
    img = np.asarray(img)
    if label is not None and img.shape[:2] != np.shape(label)[:2]:
        raise ValueError(f"random_crop: image {img.shape[:2]} and label {np.shape(label)[:2]} differ in size")
    window = crop_window(img.shape[0], img.shape[1], cropsize)
    out = apply_crop(img, window, cropsize, 0.0, dtype=np.float32)
    return out if label is None else (out, apply_crop(label, window, cropsize, label_fill))


def hwc_to_chw(arr):
    return np.ascontiguousarray(np.asarray(arr).transpose(2, 0, 1))


def pil_rescale(img, scale, order):
    """Resize a PIL image by `scale` to (round(W*s), round(H*s)) as the published multi-scale code
    (Python rounding); order 0 nearest, 1/2 bilinear, 3 bicubic."""
    w, h = img.size
    return img.resize((int(round(w * scale)), int(round(h * scale))), resample=_PIL_RESAMPLE[order])


def avg_pool_hw(arr, k):
    """k x k block mean over the first two axes, zero-padded to a multiple of k at the
    bottom/right (as the published skimage.measure.block_reduce(..., np.mean))."""
    arr = np.asarray(arr, dtype=np.float32)
    h, w = arr.shape[:2]
    ph, pw = -h % k, -w % k
    if ph or pw:
        arr = np.pad(arr, [(0, ph), (0, pw)] + [(0, 0)] * (arr.ndim - 2))
    hb, wb = arr.shape[0] // k, arr.shape[1] // k
    return arr.reshape((hb, k, wb, k) + arr.shape[2:]).mean(axis=(1, 3))


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError("the segmentation stage's image ops need OpenCV: pip install opencv-python") from None
    return cv2


def cv2_rescale(arr, scale, order):
    """Resize an HW / HWC array by `scale` as cv2.resize(fx=fy=scale) (size round(W*s) x
    round(H*s)); order 0 nearest, 3 bicubic. Works on uint8 and float32 alike."""
    cv2 = _cv2()
    interp = {0: cv2.INTER_NEAREST, 3: cv2.INTER_CUBIC}[order]
    return cv2.resize(np.asarray(arr), None, fx=scale, fy=scale, interpolation=interp)


def random_hsv_shift(img_uint8_rgb, max_shift=(10, 10, 10)):
    """The authors' segmentation colour augmentation: in OpenCV's HSV (H in 0..179), shift H, S
    and V each by a random integer in [-m, m]; H wraps modulo 180, S and V clip to 0..255."""
    cv2 = _cv2()
    hsv = cv2.cvtColor(np.ascontiguousarray(img_uint8_rgb, dtype=np.uint8), cv2.COLOR_RGB2HSV).astype(np.int32)
    shift = [rand_int(-m, m) for m in max_shift]
    hsv[..., 0] = (hsv[..., 0] + shift[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + np.asarray(shift[1:]), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


PUBLISHED_COLOR_JITTER = (0.3, 0.3, 0.3, 0.1)  # brightness, contrast, saturation, hue


def color_jitter(strengths=PUBLISHED_COLOR_JITTER):
    """torchvision ColorJitter (draws from torch's global RNG); the published one by default."""
    from torchvision.transforms import ColorJitter

    return ColorJitter(*strengths)  # brightness, contrast, saturation, hue
