"""SEAM's training losses as pure functions of CAM tensors (N, C, h, w), channel 0 = background."""
import torch
import torch.nn.functional as F

from tool.cam import with_background


def max_norm(cam, eps=1e-5):
    """Per image and channel: relu, then (x - min - eps)+ / (max - min + eps)."""
    n, c = cam.shape[:2]
    cam = F.relu(cam)
    flat = cam.reshape(n, c, -1)
    max_v = flat.max(dim=-1)[0].view(n, c, 1, 1)
    min_v = flat.min(dim=-1)[0].view(n, c, 1, 1)
    return F.relu(cam - min_v - eps) / (max_v - min_v + eps)


def max_onehot(cam):
    """Keep, per pixel, only the foreground channel(s) equal to the foreground max (values kept, not 1)."""
    fg = cam[:, 1:]
    fg = torch.where(fg == fg.max(dim=1, keepdim=True)[0], fg, torch.zeros_like(fg))
    return torch.cat([cam[:, :1], fg], dim=1)


def classification_loss(cam, labels):
    """Multilabel soft margin on the global-average-pooled foreground channels. labels (N, C-1)."""
    return F.multilabel_soft_margin_loss(cam[:, 1:].mean(dim=(2, 3)), labels)


def min_pool_loss(cam_rv, labels):
    """The published code's extra term: mean of the k = hw//4 smallest per-pixel foreground maxima.

    cam_rv (N, C, h, w) is masked by the image labels first; relu keeps it from rewarding negatives.
    """
    n, _, h, w = cam_rv.shape
    k = h * w // 4
    fg_max = (cam_rv[:, 1:] * labels[:, :, None, None]).max(dim=1)[0].reshape(n, -1)
    smallest = torch.topk(fg_max, k=k, dim=-1, largest=False)[0]
    return F.relu(smallest).sum() / (k * n)


def er_loss(cam1_norm, cam2_norm, valid=None):
    """Equivariant regularisation: mean |cam1 - cam2| over the foreground channels (same size),
    and over the `valid` pixels ((1, 1, h, w) bool; None: all)."""
    diff = torch.abs(cam1_norm[:, 1:] - cam2_norm[:, 1:])
    if valid is None:
        return torch.mean(diff)
    return (diff * valid).sum() / (valid.sum() * diff.shape[0] * diff.shape[1])


def ecr_term(cam_target, cam_rv_norm, top_ratio=0.2, valid=None):
    """Mean of the top `top_ratio` of |onehot(target) - cam_rv| per image, over all C channels
    (and the `valid` pixels only: k is taken of them)."""
    n, c, h, w = cam_rv_norm.shape
    diff = torch.abs(max_onehot(with_background(cam_target[:, 1:], dim=1)).detach() - cam_rv_norm)
    pixels = h * w
    if valid is not None:
        diff = diff.masked_fill(~valid, -1.0)  # below every kept difference (>= 0): never in the top k
        pixels = int(valid.sum())
    k = max(1, int(c * pixels * top_ratio))
    return torch.mean(torch.topk(diff.reshape(n, -1), k=k, dim=-1)[0])


def weighted_sum(terms, weights=None):
    """sum of weights[name] * term over the terms in their order (a missing weight is 1.0): at
    weights of 1.0 the very bits of the plain sum."""
    weights = weights or {}
    return sum(weights.get(name, 1.0) * term for name, term in terms.items())


def seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, use_er=True, use_ecr=True, use_min_pool=True, top_ratio=0.2,
                weights=None, transform=None):
    """All SEAM loss terms for a batch and its transformed copy.

    cam1/cam_rv1: outputs on the images (N, C, H, W); cam2/cam_rv2: on the copy A(I) (N, C, h, w);
    labels (N, C-1) multi-hot. Returns a dict of the raw (unweighted) scalar terms and `loss`,
    their sum weighted by `weights` (name -> factor; 1.0 each as published).
    ER and ECR compare branch 1 carried into branch 2's frame by `transform` (tool.transforms,
    fixed for the step; None: the published resize to branch 2's size) with branch 2, after
    max-norm and label masking (background label always 1), over the pixels it says are valid.
    cam2 None: one branch (the plain-CAM baseline), its classification and min-pool terms.
    """
    if cam2 is None:
        terms = {"cls": classification_loss(cam1, labels)}
        if use_min_pool:
            terms["min_pool"] = min_pool_loss(cam_rv1, labels)
        terms["loss"] = weighted_sum(terms, weights)
        return terms
    size = cam2.shape[2:]
    mask = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)[:, :, None, None]
    valid = None if transform is None else transform.valid(size, cam2.device)

    def to_branch2(maps):  # A(F(I)): branch 1's maps in branch 2's frame
        if transform is None:
            return F.interpolate(maps, size, mode="bilinear", align_corners=True)
        return transform.maps(maps, size)

    terms = {"cls": (classification_loss(cam1, labels) + classification_loss(cam2, labels)) / 2}
    if use_min_pool:
        terms["min_pool"] = (min_pool_loss(cam_rv1, labels) + min_pool_loss(cam_rv2, labels)) / 2
    cam1_n = to_branch2(max_norm(cam1)) * mask
    cam2_n = max_norm(cam2) * mask
    if use_er:
        terms["er"] = er_loss(cam1_n, cam2_n, valid)
    if use_ecr:
        cam_rv1_n = to_branch2(max_norm(cam_rv1)) * mask
        cam_rv2_n = max_norm(cam_rv2) * mask
        terms["ecr"] = ecr_term(cam2_n, cam_rv1_n, top_ratio, valid) + ecr_term(cam1_n, cam_rv2_n, top_ratio, valid)
    terms["loss"] = weighted_sum(terms, weights)
    return terms


def affinity_loss(aff, bg_pos, fg_pos, neg, counts=None):
    """AffinityNet loss: bg/4 + fg/4 + neg/2, each a mean over its pairs (N, offsets, P).

    `counts`: the three pair counts to divide by (default: this batch's); a torchrun rank passes
    its share of the global batch's counts (tool.engine.runtime.global_share), so that DDP's mean
    of the ranks' gradients is the one-process gradient.
    """
    if counts is None:
        counts = (bg_pos.sum(), fg_pos.sum(), neg.sum())
    bg = torch.sum(-bg_pos * torch.log(aff + 1e-5)) / (counts[0] + 1e-5)
    fg = torch.sum(-fg_pos * torch.log(aff + 1e-5)) / (counts[1] + 1e-5)
    ng = torch.sum(-neg * torch.log(1.0 + 1e-5 - aff)) / (counts[2] + 1e-5)
    return {"bg": bg, "fg": fg, "neg": ng, "loss": bg / 4 + fg / 4 + ng / 2}


def segmentation_loss(logits, labels, ignore_index=255, check_labels=True, count=None):
    """Pixel cross-entropy of (N, C, H, W) logits against (N, H, W) int64 labels, `ignore_index` skipped.

    The mean is over the labelled pixels; a batch with none (all ignore) gives 0 with zero
    gradients, not NaN. Label values outside 0..C-1 other than `ignore_index`, or logits of
    another size than the labels, raise ValueError (`check_labels=False` skips the value check,
    a GPU sync, where the data loader has checked them). `count`: the number of labelled pixels
    to divide by (default: this batch's; under torchrun a rank's share of the global batch's).
    """
    num_classes = logits.shape[1]
    if logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"logits are {tuple(logits.shape[2:])}, labels {tuple(labels.shape[1:])}")
    if check_labels:
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
        if bad.any():
            raise ValueError(f"label value {int(labels[bad][0])} outside 0..{num_classes - 1} and {ignore_index}")
    total = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    if count is None:
        count = (labels != ignore_index).sum()
    return total / count.clamp(min=1)
