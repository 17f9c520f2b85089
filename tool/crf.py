"""Dense CRF refinement, as in the published SEAM code.

pydensecrf is optional: importing this module always works, calling the CRF without it raises
a one-line ImportError. The CRF is CPU-bound and single-threaded: the inference scripts spread
it over the cores (tool.engine.inference.infer_all) while the GPU works on the next images.
"""
import numpy as np

from tool.cam import with_background

try:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
except ImportError:  # optional: crf_inference raises a one-line ImportError without it
    dcrf = None

MISSING_PYDENSECRF = "dense CRF needs pydensecrf: pip install pydensecrf2"


def require_densecrf(alternative=None):
    """Fail at start-up, not at the first CRF job, when pydensecrf is missing; `alternative`
    (e.g. "--no_crf") is named as the way to run without it."""
    if dcrf is None:
        raise SystemExit(f"error: {MISSING_PYDENSECRF}" + (f" (or pass {alternative})" if alternative else ""))


def crf_inference(img_uint8_hwc, probs_khw, t=10, bilateral_sxy=80):
    """Dense CRF over K labels on an (H, W, 3) uint8 RGB image; returns (K, H, W) float32 marginals.

    Gaussian kernel sxy 3, compat 3; bilateral sxy `bilateral_sxy` (SEAM 80, the authors'
    segmentation test 32), srgb 13, compat 10; `t` mean-field iterations.
    """
    if dcrf is None:
        raise ImportError(MISSING_PYDENSECRF)
    img = np.asarray(img_uint8_hwc)
    probs = np.asarray(probs_khw)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"crf_inference: image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    n_labels = probs.shape[0]
    h, w = img.shape[:2]
    if probs.ndim != 3 or probs.shape[1:] != (h, w):
        raise ValueError(f"crf_inference: probs must be ({n_labels}, {h}, {w}), got {probs.shape}")
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    # -log(clip(p, 1e-5, 1)) as float32: the inputs need not sum to 1 (SEAM feeds raw CAMs with a
    # background power), values above 1 are clipped to 1
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    # pydensecrf keeps a pointer to the image: pass a private contiguous copy
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=13, rgbim=np.ascontiguousarray(img).copy(),
                             compat=10)
    q = crf.inference(t)
    return np.asarray(q, dtype=np.float32).reshape((n_labels, h, w))


def crf_with_alpha(img, cams_kxhxw_fg, alpha, t=10):
    """Published `_crf_with_alpha`: CRF over [background^alpha, fg CAMs]; (K+1, H, W) float32.

    Plane 0 is background, plane i+1 is the i-th given foreground map; the caller stores the
    matching keys (0, then fg class ids + 1).
    """
    cams = np.asarray(cams_kxhxw_fg, dtype=np.float32)
    if cams.ndim != 3:
        raise ValueError(f"crf_with_alpha: CAMs must be (K, H, W), got shape {cams.shape}")
    scores = with_background(cams, alpha)
    return crf_inference(img, scores, t=t)
