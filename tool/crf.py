"""Dense CRF refinement (as in the published SEAM code) and a bounded process pool to run it.

pydensecrf is optional: importing this module always works, calling the CRF without it raises
a one-line ImportError. The CRF is CPU-bound and single-threaded, so CRFPool spreads it over
the cores while the GPU works on the next images.
"""
import concurrent.futures as cf

import numpy as np

from tool.cam import with_background
from tool.distributed import usable_cores
from tool.procs import helper_executor

try:
    import pydensecrf.densecrf as dcrf
except ImportError:  # optional dependency; see _require_densecrf
    dcrf = None

MISSING_PYDENSECRF = "dense CRF needs pydensecrf: pip install pydensecrf2"
PROB_CLIP = 1e-5  # pydensecrf.utils.unary_from_softmax default


def require_densecrf(alternative=None):
    """Fail at start-up, not at the first CRF job, when pydensecrf is missing; `alternative`
    (e.g. "--no_crf") is named as the way to run without it."""
    if dcrf is None:
        raise SystemExit(f"error: {MISSING_PYDENSECRF}" + (f" (or pass {alternative})" if alternative else ""))


def _require_densecrf():
    if dcrf is None:
        raise ImportError(MISSING_PYDENSECRF)
    return dcrf


def unary_from_probs(probs_khw, clip=PROB_CLIP):
    """(K, H, W) probabilities -> (K, H*W) float32 C-contiguous unary -log(clip(p, clip, 1)).

    Same numbers as pydensecrf.utils.unary_from_softmax(probs) (scale=None): the inputs need not
    sum to 1 (SEAM feeds raw CAMs with a background power), values above 1 are clipped to 1.
    """
    probs = np.asarray(probs_khw)
    unary = -np.log(np.clip(probs, clip, 1.0)).reshape(probs.shape[0], -1)
    return np.ascontiguousarray(unary, dtype=np.float32)


def crf_inference(img_uint8_hwc, probs_khw, t=10, bilateral_sxy=80):
    """Dense CRF over K labels on an (H, W, 3) uint8 RGB image; returns (K, H, W) float32 marginals.

    Gaussian kernel sxy 3, compat 3; bilateral sxy `bilateral_sxy` (SEAM 80, the authors'
    segmentation test 32), srgb 13, compat 10; `t` mean-field iterations.
    """
    densecrf = _require_densecrf()
    img = np.asarray(img_uint8_hwc)
    probs = np.asarray(probs_khw)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"crf_inference: image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    n_labels = probs.shape[0]
    h, w = img.shape[:2]
    if probs.ndim != 3 or probs.shape[1:] != (h, w):
        raise ValueError(f"crf_inference: probs must be ({n_labels}, {h}, {w}), got {probs.shape}")
    crf = densecrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(unary_from_probs(probs))
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


def default_crf_workers(loader_workers=0):
    """CRF processes: the cores this process may use, less the data loader's workers; at least 1."""
    return max(1, usable_cores() - loader_workers)


def output_pool(crf, crf_workers=None, loader_workers=0):
    """The pool an inference script hands its per-image outputs to: CRF processes when `crf`
    (`crf_workers`, default the cores less the loader's), else one thread that writes files."""
    if not crf:
        return CRFPool(1, threads=True)
    return CRFPool(default_crf_workers(loader_workers) if crf_workers is None else crf_workers)


def _call(fn, args, kwargs):
    return fn(*args, **kwargs)


class CRFPool:
    """Run top-level functions on worker processes with at most `max_pending` jobs in flight.

    `submit` blocks while `max_pending` jobs are outstanding, so memory stays bounded when a
    fast producer (the GPU) feeds slow consumers (CRF). Workers are started with `spawn`
    (safe after CUDA is initialised), so `fn` must be importable (module top level) and its
    arguments picklable; pass numpy arrays and paths, not tensors on the GPU.

    Fail fast: a job that raised makes the next `submit` (or leaving the `with` block) raise
    its exception. `num_workers=0` runs each job inline inside `submit` (tests, debugging);
    `threads=True` runs jobs on threads instead (file writes, which release the GIL).
    """

    def __init__(self, num_workers=None, max_pending=None, threads=False):
        self.num_workers = default_crf_workers() if num_workers is None else int(num_workers)
        if self.num_workers < 0:
            raise ValueError(f"CRFPool: num_workers must be >= 0, got {num_workers}")
        self.max_pending = max(1, int(max_pending) if max_pending is not None else 2 * self.num_workers)
        self._pending = set()
        self._executor = None
        if self.num_workers > 0 and threads:
            self._executor = cf.ThreadPoolExecutor(max_workers=self.num_workers)
        elif self.num_workers > 0:
            self._executor = helper_executor(self.num_workers, "spawn")

    def submit(self, fn, *args, **kwargs):
        """Schedule fn(*args, **kwargs); returns a concurrent.futures.Future."""
        if self._executor is None:
            future = cf.Future()
            future.set_result(fn(*args, **kwargs))
            return future
        self._reap()
        while len(self._pending) >= self.max_pending:
            cf.wait(self._pending, return_when=cf.FIRST_COMPLETED)
            self._reap()
        future = self._executor.submit(_call, fn, args, kwargs)
        self._pending.add(future)
        return future

    def join(self):
        """Wait for every submitted job; raises the first failure."""
        cf.wait(self._pending)
        self._reap()

    def _reap(self):
        done = {f for f in self._pending if f.done()}
        self._pending -= done
        for future in done:
            error = future.exception()
            if error is not None:
                raise error

    def close(self, cancel=False):
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.close(cancel=True)
            return False
        try:
            self.join()
        finally:
            self.close(cancel=True)
        return False
