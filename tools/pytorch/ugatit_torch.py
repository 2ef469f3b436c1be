"""U-GAT-IT in PyTorch, written from ../shared/SPEC.md, with the reference implementation's
module layout so that its state_dict names are the reference's, and the reference's losses. Used to
make the golden fixtures that prove the Deno toolkit computes what the reference computes
(tests/fixtures), as the PyTorch peer in benchmarks and in the GPU recipe search."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

EPS = 1e-5


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 1, 0, bias=False), nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 1, 0, bias=False), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def _mix(x, rho):
    """rho * IN(x) + (1 - rho) * LN(x), both with the unbiased variance (torch.var's default)."""
    in_mean, in_var = torch.mean(x, dim=[2, 3], keepdim=True), torch.var(x, dim=[2, 3], keepdim=True)
    ln_mean, ln_var = torch.mean(x, dim=[1, 2, 3], keepdim=True), torch.var(x, dim=[1, 2, 3], keepdim=True)
    out_in = (x - in_mean) / torch.sqrt(in_var + EPS)
    out_ln = (x - ln_mean) / torch.sqrt(ln_var + EPS)
    return rho * out_in + (1 - rho) * out_ln


class AdaILN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.rho = nn.Parameter(torch.full((1, c, 1, 1), 0.9))

    def forward(self, x, gamma, beta):
        return _mix(x, self.rho) * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.rho = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return _mix(x, self.rho) * self.gamma + self.beta


class ResnetAdaILNBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.pad1, self.conv1 = nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 1, 0, bias=False)
        self.norm1, self.relu1 = AdaILN(dim), nn.ReLU(True)
        self.pad2, self.conv2 = nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, 1, 0, bias=False)
        self.norm2 = AdaILN(dim)

    def forward(self, x, gamma, beta):
        out = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        return x + self.norm2(self.conv2(self.pad2(out)), gamma, beta)


class Generator(nn.Module):
    def __init__(self, ch=64, n_res=4, img_size=256, light=False, img_ch=3):
        super().__init__()
        self.light, self.n_res = light, n_res
        c = ch * 4
        down = [nn.ReflectionPad2d(3), nn.Conv2d(img_ch, ch, 7, 1, 0, bias=False), nn.InstanceNorm2d(ch),
                nn.ReLU(True)]
        for m in (1, 2):
            down += [nn.ReflectionPad2d(1), nn.Conv2d(ch * m, ch * m * 2, 3, 2, 0, bias=False),
                     nn.InstanceNorm2d(ch * m * 2), nn.ReLU(True)]
        down += [ResnetBlock(c) for _ in range(n_res)]
        self.DownBlock = nn.Sequential(*down)
        self.gap_fc = nn.Linear(c, 1, bias=False)
        self.gmp_fc = nn.Linear(c, 1, bias=False)
        self.conv1x1 = nn.Conv2d(2 * c, c, 1, 1, bias=True)
        self.relu = nn.ReLU(True)
        mlp_in = c if light else c * (img_size // 4) ** 2
        self.FC = nn.Sequential(nn.Linear(mlp_in, c, bias=False), nn.ReLU(True), nn.Linear(c, c, bias=False),
                                nn.ReLU(True))
        self.gamma = nn.Linear(c, c, bias=False)
        self.beta = nn.Linear(c, c, bias=False)
        for i in range(n_res):
            setattr(self, f"UpBlock1_{i + 1}", ResnetAdaILNBlock(c))
        up = []
        for m in (4, 2):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                   nn.Conv2d(ch * m, ch * m // 2, 3, 1, 0, bias=False), ILN(ch * m // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ch, img_ch, 7, 1, 0, bias=False), nn.Tanh()]
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, x):
        x = self.DownBlock(x)
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).flatten(1))
        gap = x * self.gap_fc.weight[:, :, None, None]
        gmp = x * self.gmp_fc.weight[:, :, None, None]
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)
        x = self.relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        h = F.adaptive_avg_pool2d(x, 1).flatten(1) if self.light else x.flatten(1)
        h = self.FC(h)
        gamma, beta = self.gamma(h), self.beta(h)
        for i in range(self.n_res):
            x = getattr(self, f"UpBlock1_{i + 1}")(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


class Discriminator(nn.Module):
    def __init__(self, ch=64, n_layers=5, img_ch=3):
        super().__init__()
        model = [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(img_ch, ch, 4, 2, 0, bias=True)),
                 nn.LeakyReLU(0.2, True)]
        width = ch
        for _ in range(1, n_layers - 2):
            model += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(width, width * 2, 4, 2, 0, bias=True)),
                      nn.LeakyReLU(0.2, True)]
            width *= 2
        model += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(width, width * 2, 4, 1, 0, bias=True)),
                  nn.LeakyReLU(0.2, True)]
        cd = width * 2
        self.model = nn.Sequential(*model)
        self.gap_fc = spectral_norm(nn.Linear(cd, 1, bias=False))
        self.gmp_fc = spectral_norm(nn.Linear(cd, 1, bias=False))
        self.conv1x1 = nn.Conv2d(2 * cd, cd, 1, 1, bias=True)
        self.leaky_relu = nn.LeakyReLU(0.2, True)
        self.pad = nn.ReflectionPad2d(1)
        self.conv = spectral_norm(nn.Conv2d(cd, 1, 4, 1, 0, bias=False))

    def forward(self, x):
        x = self.model(x)
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).flatten(1))
        # The reference re-weights with parameters()[0], i.e. the raw weight_orig.
        gap = x * self.gap_fc.weight_orig[:, :, None, None]
        gmp = x * self.gmp_fc.weight_orig[:, :, None, None]
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)
        x = self.leaky_relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        return self.conv(self.pad(x)), cam_logit, heatmap


def _adv(outs, target):
    """The least-squares adversarial loss over discriminator outputs (logit and CAM logit each)."""
    return sum(F.mse_loss(x, target(x)) for o in outs for x in o[:2])


def discriminator_loss(gA2B, gB2A, dGA, dGB, dLA, dLB, real_A, real_B):
    """The reference's discriminator loss (before its adversarial weight), fakes detached."""
    with torch.no_grad():
        fake_A2B, _, _ = gA2B(real_A)
        fake_B2A, _, _ = gB2A(real_B)
    return _adv([dGA(real_A), dLA(real_A), dGB(real_B), dLB(real_B)], torch.ones_like) + \
        _adv([dGA(fake_B2A), dLA(fake_B2A), dGB(fake_A2B), dLB(fake_A2B)], torch.zeros_like)


def generator_losses(gA2B, gB2A, dGA, dGB, dLA, dLB, real_A, real_B):
    """The reference's generator terms, unweighted: adversarial, cycle, identity, CAM."""
    ones, zeros, bce = torch.ones_like, torch.zeros_like, F.binary_cross_entropy_with_logits
    fake_A2B, cam_A2B, _ = gA2B(real_A)
    fake_B2A, cam_B2A, _ = gB2A(real_B)
    fake_A2B2A, _, _ = gB2A(fake_A2B)
    fake_B2A2B, _, _ = gA2B(fake_B2A)
    fake_A2A, cam_A2A, _ = gB2A(real_A)
    fake_B2B, cam_B2B, _ = gA2B(real_B)
    adv = _adv([dGA(fake_B2A), dLA(fake_B2A), dGB(fake_A2B), dLB(fake_A2B)], ones)
    cycle = F.l1_loss(fake_A2B2A, real_A) + F.l1_loss(fake_B2A2B, real_B)
    identity = F.l1_loss(fake_A2A, real_A) + F.l1_loss(fake_B2B, real_B)
    cam = bce(cam_B2A, ones(cam_B2A)) + bce(cam_A2A, zeros(cam_A2A)) + \
        bce(cam_A2B, ones(cam_A2B)) + bce(cam_B2B, zeros(cam_B2B))
    return adv, cycle, identity, cam
