"""AffinityNet: a backbone + a feature head whose L1 distances give pairwise affinities."""
import torch
import torch.nn.functional as F
from torch import nn

from network.backbone import StageNet, scaled
from tool.affinity import effective_radius, get_indices_of_pairs


class AffinityNet(StageNet):
    """forward(x (N,3,H,W)) -> aff (N, offsets, P): exp(-mean_c |f_to - f_from|) on radius pairs.

    P is the number of source pixels (grid minus radius-1 rows at the bottom and columns on
    each side); offsets are in the published order (34 for radius 5).
    """

    network = "aff"
    head_names = ("f8_3", "f8_4", "f8_5", "f9")
    record_fields = ("radius",)

    def __init__(self, backbone, radius=5):
        super().__init__(backbone)
        self.radius = radius
        ch, width = backbone.channels, backbone.width
        self.f8_3 = nn.Conv2d(ch["conv4"], scaled(64, width), 1, bias=False)
        self.f8_4 = nn.Conv2d(ch["conv5"], scaled(128, width), 1, bias=False)
        self.f8_5 = nn.Conv2d(ch["conv6"], scaled(256, width), 1, bias=False)
        embed = self.f8_3.out_channels + self.f8_4.out_channels + self.f8_5.out_channels
        self.f9 = nn.Conv2d(embed, embed, 1, bias=False)
        for conv in (self.f8_3, self.f8_4, self.f8_5):
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        self._pairs = {}

    def features(self, x):
        """(N,3,H,W) -> (N, D, H/8, W/8) affinity embedding."""
        d = self.backbone(x)
        f = torch.cat(
            [F.elu(self.f8_3(d["conv4"])), F.elu(self.f8_4(d["conv5"])), F.elu(self.f8_5(d["conv6"]))], dim=1
        )
        return F.elu(self.f9(f))

    def pair_indices(self, grid_hw, device):
        key = (tuple(grid_hw), str(device))
        if key not in self._pairs:
            if len(self._pairs) >= 8:  # COCO has many grid sizes: keep the last few on the device
                self._pairs.pop(next(iter(self._pairs)))
            ind_from, ind_to = get_indices_of_pairs(effective_radius(self.radius, grid_hw), grid_hw)
            self._pairs[key] = (torch.from_numpy(ind_from).to(device), torch.from_numpy(ind_to).to(device))
        return self._pairs[key]

    def forward(self, x):
        f = self.features(x)
        n, c, h, w = f.shape
        ind_from, ind_to = self.pair_indices((h, w), f.device)
        f = f.view(n, c, h * w)
        ff = f.index_select(2, ind_from).unsqueeze(2)  # N, D, 1, P
        ft = f.index_select(2, ind_to).view(n, c, -1, ind_from.numel())  # N, D, offsets, P
        return torch.exp(-torch.mean(torch.abs(ft - ff), dim=1))
