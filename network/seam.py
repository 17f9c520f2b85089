"""SEAM network: a backbone + fc8 CAM head + pixel correlation module (PCM)."""
import torch
import torch.nn.functional as F
from torch import nn

from network.backbone import StageNet, scaled
from network.pcm import pcm_input_cam, pcm_propagate

PCM_FEATURES = "image,conv4,conv5"  # the published embedding's inputs


class SEAM(StageNet):
    """forward(x (N,3,H,W)) -> cam (N,C,H,W) raw fc8 CAM, cam_rv (N,C,H,W) PCM-refined CAM.

    `use_pcm=False` is the plain-CAM ablation: cam_rv is the CAM itself (no f8_3/f8_4/f9 used).
    `pcm_features`: what PCM's embedding f9 sees, some of "image" (the input at the CAM's size),
    "conv4" (through f8_3) and "conv5" (through f8_4), comma-separated; published: all three.
    """

    network = "seam"
    head_names = ("fc8", "f8_3", "f8_4", "f9")
    record_fields = ("num_classes", "use_pcm", "pcm_features")

    def __init__(self, backbone, num_classes=21, use_pcm=True, pcm_features=PCM_FEATURES):
        super().__init__(backbone)
        self.num_classes, self.use_pcm, self.pcm_features = num_classes, use_pcm, pcm_features
        features = pcm_features.split(",")
        if not features or set(features) - set(PCM_FEATURES.split(",")) or len(set(features)) < len(features):
            raise ValueError(f"--pcm_features {pcm_features}: give some of {PCM_FEATURES}, each once")
        ch, width = backbone.channels, backbone.width
        self.dropout7 = nn.Dropout2d(0.5)
        self.fc8 = nn.Conv2d(ch["conv6"], num_classes, 1, bias=False)
        embed_in = 3 if "image" in features else 0
        if "conv4" in features:
            self.f8_3 = nn.Conv2d(ch["conv4"], scaled(64, width), 1, bias=False)
            embed_in += self.f8_3.out_channels
        if "conv5" in features:
            self.f8_4 = nn.Conv2d(ch["conv5"], scaled(128, width), 1, bias=False)
            embed_in += self.f8_4.out_channels
        self.f9 = nn.Conv2d(embed_in, max(3, embed_in - 3) if "image" in features else embed_in, 1, bias=False)
        # every module built before any is initialised: the published order of random draws
        nn.init.xavier_uniform_(self.fc8.weight)
        for name in ("f8_3", "f8_4"):
            if hasattr(self, name):
                nn.init.kaiming_normal_(getattr(self, name).weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        if not use_pcm:  # unused heads: untrained (and DDP must not wait for their gradients)
            for name in ("f8_3", "f8_4", "f9"):
                if hasattr(self, name):
                    getattr(self, name).weight.requires_grad_(False)

    def forward(self, x):
        H, W = x.shape[2:]
        d = self.backbone(x)
        cam = self.fc8(self.dropout7(d["conv6"]))  # N, C, h, w
        h, w = cam.shape[2:]
        if self.use_pcm:
            # PCM learns on detached features: only ECR and the min-pool term train f8_3/f8_4/f9.
            parts = []
            if "image" in self.pcm_features:
                parts.append(F.interpolate(x, (h, w), mode="bilinear", align_corners=True))
            if hasattr(self, "f8_3"):
                parts.append(F.relu(self.f8_3(d["conv4"].detach())))
            if hasattr(self, "f8_4"):
                parts.append(F.relu(self.f8_4(d["conv5"].detach())))
            f = self.f9(torch.cat(parts, dim=1))
            # Affinities, their normalisation and the propagation in fp32 even under autocast:
            # in bf16 the hw x hw normalisation and the matmul lose several digits.
            with torch.autocast(x.device.type, enabled=False):
                cam_rv = pcm_propagate(pcm_input_cam(cam.float()), f.float())
        else:
            cam_rv = cam
        cam_rv = F.interpolate(cam_rv, (H, W), mode="bilinear", align_corners=True)
        cam = F.interpolate(cam, (H, W), mode="bilinear", align_corners=True)
        return cam, cam_rv
