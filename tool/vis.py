"""VOC colour palette, label-map PNG reading and drawing (CAM overlays, image grids); the
writers are tool.engine.files.save_label_png / save_image."""
import os

import numpy as np
from PIL import Image


def voc_palette(n=256):
    """The standard PASCAL VOC palette as a (n, 3) uint8 array (bit-interleaved colour map)."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def label_image(label, path="label map"):
    """An (H, W) label map (class ids, 255 = ignore) as a VOC-palette PIL image."""
    label = np.asarray(label)
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"{path}: label map must be 2-D with values in 0..255")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    return img


def load_label_png(path):
    """Read a label PNG as the (H, W) uint8 index map (palette indices, not colours); a damaged
    file is a ValueError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: label PNG not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"{path}: expected a palette or greyscale label PNG, got mode {img.mode}")
            return np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:  # truncated, corrupt, not a PNG
        raise ValueError(f"{path}: damaged label PNG ({type(e).__name__}: {e})") from None


def label_png_problem(path):
    """Why the label PNG at `path` cannot be read (cut short, corrupt), else None: checks its
    chunks without decoding (milliseconds per file)."""
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        return f"damaged label PNG ({type(e).__name__}: {e})"
    return None


def colorize(label):
    """(H, W) label map -> (H, W, 3) uint8 RGB with the VOC palette."""
    return voc_palette()[np.asarray(label, dtype=np.uint8)]


def jet(values):
    """[0, 1] array -> (..., 3) uint8 RGB with OpenCV's jet colour map (blue = 0, red = 1)."""
    import cv2  # here: a stage script runs without OpenCV's libraries (libGL)

    levels = np.round(np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_JET)[:, 0, ::-1].reshape(*levels.shape, 3)


def cam_overlay(img_uint8_hwc, cam_hw, alpha=0.5):
    """Blend the jet colouring of an (H, W) CAM in [0, 1] over an (H, W, 3) uint8 image.

    alpha is the weight of the heat map; values outside [0, 1] are clipped. Returns uint8 HWC.
    """
    img = np.asarray(img_uint8_hwc)
    cam = np.asarray(cam_hw)
    if img.ndim != 3 or img.shape[2] != 3 or cam.shape != img.shape[:2]:
        raise ValueError(f"cam_overlay: need an (H, W, 3) image and an (H, W) CAM, "
                         f"got {img.shape} and {cam.shape}")
    blended = (1.0 - alpha) * img.astype(np.float32) + alpha * jet(cam).astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def max_cam_overlay(img_uint8_hwc, cams_khw, alpha=0.5):
    """cam_overlay of the per-pixel maximum over the (K, H, W) class CAMs (zero when K = 0)."""
    cams = np.asarray(cams_khw, dtype=np.float32)
    if cams.ndim != 3:
        raise ValueError(f"max_cam_overlay: CAMs must be (K, H, W), got shape {cams.shape}")
    cam = cams.max(axis=0) if cams.shape[0] else np.zeros(cams.shape[1:], np.float32)
    return cam_overlay(img_uint8_hwc, cam, alpha)


def _as_rgb_cell(image, cell_hw):
    """uint8 HWC (or HW greyscale) -> PIL RGB image resized to cell (h, w)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"grid_image: cells must be uint8 (H, W, 3) or (H, W), "
                         f"got {arr.shape} {arr.dtype}")
    cell = Image.fromarray(arr).convert("RGB")
    if cell.size != (cell_hw[1], cell_hw[0]):
        cell = cell.resize((cell_hw[1], cell_hw[0]), Image.BILINEAR)
    return cell


GRID_GAP = 2  # pixels between cells
GRID_TITLE_HEIGHT = 16  # header strip per line of the column titles


def grid_image(rows_of_images, labels=None, cell_hw=None, captions=None):
    """Rows of uint8 images as one PIL image grid.

    Every cell is resized to `cell_hw` (default: the first image's (H, W)); short rows are
    padded with white. `labels` are column titles drawn in a header strip. The PNG is
    (title + rows*h + (rows-1)*gap) x (cols*w + (cols-1)*gap) with gap = GRID_GAP and
    title = GRID_TITLE_HEIGHT per line of the longest title ("\n" breaks lines), else 0.
    `captions`: rows of texts (or None) drawn on a white strip at the top of their cells.
    """
    from PIL import ImageDraw

    rows = [list(row) for row in rows_of_images]
    if not rows or not any(rows):
        raise ValueError("grid_image needs at least one image")
    n_cols = max(len(row) for row in rows)
    if labels is not None and len(labels) > n_cols:
        raise ValueError(f"grid_image: {len(labels)} column titles for {n_cols} columns")
    cell_h, cell_w = cell_hw if cell_hw is not None else np.asarray(next(r for r in rows if r)[0]).shape[:2]
    title_h = GRID_TITLE_HEIGHT * max(str(t).count("\n") + 1 for t in labels) if labels else 0
    width = n_cols * cell_w + (n_cols - 1) * GRID_GAP
    height = title_h + len(rows) * cell_h + (len(rows) - 1) * GRID_GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(labels or ()):
        draw.text((col * (cell_w + GRID_GAP) + 2, 2), str(title), fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            xy = (c * (cell_w + GRID_GAP), title_h + r * (cell_h + GRID_GAP))
            canvas.paste(_as_rgb_cell(image, (cell_h, cell_w)), xy)
            text = captions[r][c] if captions and r < len(captions) and c < len(captions[r]) else None
            if text:
                box = draw.textbbox((xy[0] + 2, xy[1] + 1), str(text))
                draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(255, 255, 255))
                draw.text((xy[0] + 2, xy[1] + 1), str(text), fill=(0, 0, 0))
    return canvas


def denormalize(img_chw, mean, std):
    """Undo (x / 255 - mean) / std on a (3, H, W) tensor or array -> (H, W, 3) uint8 for display.

    mean and std are per channel in [0, 1] units (the torchvision / ImageNet convention).
    """
    if hasattr(img_chw, "detach"):  # torch tensor, possibly on the GPU
        img_chw = img_chw.detach().float().cpu().numpy()
    arr = np.asarray(img_chw, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"denormalize: expected (C, H, W), got shape {arr.shape}")
    mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(std, np.float32).reshape(-1, 1, 1)
    pixels = (arr * std + mean) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
