"""VOC colour palette, label-map PNG reading and drawing (CAM overlays, image grids); the
writers are tool.engine.files.save_label_png / save_image."""
import os

import numpy as np
from PIL import Image


def voc_palette(n=256):
    """The standard PASCAL VOC palette as a (n, 3) uint8 array (bit-interleaved colour map)."""
    bits = np.arange(n)[:, None] >> np.arange(24)  # bit 3j + k of the index: bit 7 - j of channel k
    return sum((bits[:, 3 * j : 3 * j + 3] & 1) << (7 - j) for j in range(8)).astype(np.uint8)


PALETTE_FLAT = voc_palette().reshape(-1).tolist()  # r, g, b, r, ...: what every label PNG carries


def label_image(label, path="label map"):
    """An (H, W) label map (class ids, 255 = ignore) as a VOC-palette PIL image."""
    label = np.asarray(label)
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"{path}: label map must be 2-D with values in 0..255")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(PALETTE_FLAT)
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
            arr = np.asarray(image)
            if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
                raise ValueError(f"grid_image: cells must be uint8 (H, W, 3) or (H, W), "
                                 f"got {arr.shape} {arr.dtype}")
            xy = (c * (cell_w + GRID_GAP), title_h + r * (cell_h + GRID_GAP))
            canvas.paste(Image.fromarray(arr).convert("RGB").resize((cell_w, cell_h), Image.BILINEAR), xy)
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


# The background-threshold curve (evaluation.py --curve): colours a reader (and a test) can tell apart
CURVE_FRAME = (128, 128, 128)  # the plot area's border, drawn in no other place
CURVE_LINE = (31, 119, 180)  # the curve and a dot at each threshold
CURVE_BEST = (214, 39, 40)  # a vertical line at the best threshold and a dot on its point
CURVE_GRID = (228, 228, 228)


def curve_axis(mious, step=10):
    """The mIoU axis of a curve plot: multiples of `step` around the values, within 0..100."""
    lo = max(0.0, np.floor(min(mious) / step) * step)
    hi = min(100.0, np.ceil(max(mious) / step) * step)
    if hi <= lo:
        lo, hi = (lo, lo + step) if lo + step <= 100 else (hi - step, hi)
    return float(lo), float(hi)


def curve_image(curve, best_t, title="", size=(640, 400), box=(64, 44, 616, 352)):
    """A PIL image of mIoU over the background threshold: `curve` is [(t, miou), ...] in increasing
    t (two points or more), `best_t` one of its thresholds.

    The plot area `box` (left, top, right, bottom) is framed in CURVE_FRAME; t runs linearly from
    the first threshold at `left` to the last at `right`, mIoU from curve_axis's low end at
    `bottom` to its high end at `top`. The curve is CURVE_LINE, the best threshold a CURVE_BEST
    vertical line with a dot on its point; grid lines every 0.1 and every 10 mIoU points.
    """
    from PIL import ImageDraw

    ts, ms = [float(t) for t, _ in curve], [float(m) for _, m in curve]
    if len(ts) < 2 or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError("curve_image needs two or more points in increasing threshold")
    left, top, right, bottom = box
    lo, hi = curve_axis(ms)

    def xy(t, m):
        return (round(left + (t - ts[0]) / (ts[-1] - ts[0]) * (right - left)),
                round(bottom - (m - lo) / (hi - lo) * (bottom - top)))

    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def text(x, y, words, align_x=0.0, align_y=0.0):  # align 0.5: centred on x (y), 1: ending there
        x0, y0, x1, y1 = draw.textbbox((0, 0), words)
        draw.text((x - align_x * (x1 - x0), y - align_y * (y1 - y0)), words, fill=(0, 0, 0))

    for m in np.arange(lo, hi + 1e-9, 10):
        y = xy(ts[0], m)[1]
        draw.line([(left, y), (right, y)], fill=CURVE_GRID)
        text(left - 8, y, f"{m:g}", 1.0, 0.5)
    for tick in np.arange(np.ceil(ts[0] * 10) / 10, ts[-1] + 1e-9, 0.1):
        x = xy(tick, lo)[0]
        draw.line([(x, top), (x, bottom)], fill=CURVE_GRID)
        text(x, bottom + 8, f"{tick:.1f}", 0.5)
    draw.rectangle([left, top, right, bottom], outline=CURVE_FRAME)
    best_m = ms[ts.index(float(best_t))]
    best = xy(best_t, best_m)
    draw.line([(best[0], top), (best[0], bottom)], fill=CURVE_BEST)
    points = [xy(t, m) for t, m in zip(ts, ms)]
    draw.line(points, fill=CURVE_LINE, width=2)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=CURVE_LINE)
    draw.ellipse([best[0] - 4, best[1] - 4, best[0] + 4, best[1] + 4], fill=CURVE_BEST)
    text(left, 10, title)
    text(left, 26, f"best t={best_t:.2f}: mIoU {best_m:.2f}")
    text((left + right) / 2, bottom + 26, "background threshold t", 0.5)
    text(8, top - 16, "mIoU (%)")
    return img
