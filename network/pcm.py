"""Pixel correlation module (PCM) of SEAM: pure functions on feature-grid tensors."""
import torch
import torch.nn.functional as F


@torch.no_grad()
def pcm_input_cam(cam):
    """The CAM that PCM propagates, computed without gradient as published.

    cam (N,C,h,w) raw fc8 output -> (N,C,h,w): per channel relu and max-normalisation,
    channel 0 := 1 - max foreground, then per pixel every foreground channel below the
    pixel's foreground maximum is zeroed (not masked by image labels).
    """
    n, c, h, w = cam.shape
    cam = F.relu(cam)
    cam_max = cam.view(n, c, -1).max(dim=-1)[0].view(n, c, 1, 1) + 1e-5
    cam = F.relu(cam - 1e-5) / cam_max
    fg = cam[:, 1:]
    fg_max = fg.max(dim=1, keepdim=True)[0]
    fg = torch.where(fg < fg_max, torch.zeros_like(fg), fg)
    return torch.cat([1 - fg_max, fg], dim=1)


def pcm_propagate(cam, f):
    """cam (N,C,h,w), f (N,D,h,w) embedded features -> cam_rv (N,C,h,w).

    Cosine affinities between pixels, relu'd, normalised so that every output pixel's
    weights over source pixels sum to 1, then cam_rv = cam @ aff.
    """
    n, c, h, w = cam.shape
    f = f.flatten(2)  # N, D, hw
    f = f / (torch.norm(f, dim=1, keepdim=True) + 1e-5)
    aff = F.relu(torch.matmul(f.transpose(1, 2), f))  # N, hw(src), hw(dst)
    aff = aff / (aff.sum(dim=1, keepdim=True) + 1e-5)
    return torch.matmul(cam.flatten(2), aff).view(n, c, h, w)
