"""Network definitions for the model zoo that MONAI 1.3 does not provide (own code).

All are small on purpose: every case must run in about a second in a plain CPU runtime.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------- MedNeXt
class MedNeXtBlock(nn.Module):
    """ConvNeXt-style 3D block: depthwise k^3 conv -> GroupNorm(groups=C) -> 1x1 expand
    -> GELU -> 1x1 compress, plus residual. With stride 2 it is the down block
    (channels doubled; residual through a strided 1x1 conv)."""

    def __init__(self, cin, cout, exp=2, k=7, stride=1):
        super().__init__()
        self.dw = nn.Conv3d(cin, cin, k, stride=stride, padding=k // 2, groups=cin)
        self.norm = nn.GroupNorm(cin, cin)  # one group per channel, as in MedNeXt
        self.expand = nn.Conv3d(cin, exp * cin, 1)
        self.act = nn.GELU()
        self.compress = nn.Conv3d(exp * cin, cout, 1)
        self.res = None
        if stride != 1 or cin != cout:
            self.res = nn.Conv3d(cin, cout, 1, stride=stride)

    def forward(self, x):
        y = self.compress(self.act(self.expand(self.norm(self.dw(x)))))
        return y + (x if self.res is None else self.res(x))


class MedNeXtUpBlock(nn.Module):
    """MedNeXt up block: depthwise *transposed* k^3 conv, stride 2 (output 2n-1, then padded
    by one voxel at the front of each axis to 2n, as the original does), channels halved."""

    def __init__(self, cin, cout, exp=2, k=7):
        super().__init__()
        self.dw = nn.ConvTranspose3d(cin, cin, k, stride=2, padding=k // 2, groups=cin)
        self.norm = nn.GroupNorm(cin, cin)
        self.expand = nn.Conv3d(cin, exp * cin, 1)
        self.act = nn.GELU()
        self.compress = nn.Conv3d(exp * cin, cout, 1)
        self.res = nn.ConvTranspose3d(cin, cout, 1, stride=2)

    def forward(self, x):
        y = self.compress(self.act(self.expand(self.norm(self.dw(x)))))
        y = y + self.res(x)
        return F.pad(y, (1, 0, 1, 0, 1, 0))


class MedNeXt(nn.Module):
    def __init__(self, in_channels=1, num_classes=3, c=8, levels=3, exp=2, k=7):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, c, 1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        for i in range(levels):
            self.enc.append(MedNeXtBlock(c << i, c << i, exp, k))
            self.down.append(MedNeXtBlock(c << i, c << (i + 1), exp, k, stride=2))
        self.bottleneck = MedNeXtBlock(c << levels, c << levels, exp, k)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(levels - 1, -1, -1):
            self.up.append(MedNeXtUpBlock(c << (i + 1), c << i, exp, k))
            self.dec.append(MedNeXtBlock(c << i, c << i, exp, k))
        self.head = nn.Conv3d(c, num_classes, 1)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, dec in zip(self.up, self.dec):
            x = dec(up(x) + skips.pop())  # MedNeXt sums skips instead of concatenating
        return self.head(x)


# --------------------------------------------------------------------------- SegFormer3D
def _tokens(x):  # (B, C, D, H, W) -> (B, N, C)
    return x.flatten(2).transpose(1, 2)


def _volume(t, shape):  # (B, N, C) -> (B, C, D, H, W), shape = (D, H, W) of the tokens
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], shape[0], shape[1], shape[2])


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a volume reduced by a strided
    conv (kernel = stride = sr) + LayerNorm: SegFormer's 'efficient self-attention'."""

    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv3d(dim, dim, sr, stride=sr) if sr > 1 else None
        self.sr_norm = nn.LayerNorm(dim) if sr > 1 else None

    def forward(self, t, shape):
        b, n, c = t.shape
        h = self.heads
        q = self.q(t).reshape(b, n, h, c // h).permute(0, 2, 1, 3)
        kv_in = t
        if self.sr is not None:
            kv_in = self.sr_norm(_tokens(self.sr(_volume(t, shape))))
        kv = self.kv(kv_in).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        att = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class MixFFN(nn.Module):
    """Linear expand -> depthwise 3x3x3 conv on the token volume -> GELU -> Linear."""

    def __init__(self, dim, exp=4):
        super().__init__()
        self.fc1 = nn.Linear(dim, exp * dim)
        self.dw = nn.Conv3d(exp * dim, exp * dim, 3, padding=1, groups=exp * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(exp * dim, dim)

    def forward(self, t, shape):
        return self.fc2(self.act(_tokens(self.dw(_volume(self.fc1(t), shape)))))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, sr):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), EfficientAttention(dim, heads, sr)
        self.n2, self.ffn = nn.LayerNorm(dim), MixFFN(dim)

    def forward(self, t, shape):
        t = t + self.attn(self.n1(t), shape)
        return t + self.ffn(self.n2(t), shape)


class SegFormer3D(nn.Module):
    """4 stages of overlapping patch embedding (strided conv k7/s4 then k3/s2) + transformer
    blocks; all-MLP decoder: per-stage linear to a common width, trilinear resize to the
    stage-1 grid, concat, 1x1 fuse (BN+ReLU), head, trilinear x4 to the input grid."""

    def __init__(self, in_channels=1, num_classes=3, dims=(16, 32, 48, 64), heads=(1, 2, 2, 4),
                 srs=(4, 2, 1, 1), depth=1, dec_dim=32):
        super().__init__()
        self.embed = nn.ModuleList()
        self.embed_norm = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.stage_norm = nn.ModuleList()
        cin = in_channels
        for i, d in enumerate(dims):
            k, s = (7, 4) if i == 0 else (3, 2)
            self.embed.append(nn.Conv3d(cin, d, k, stride=s, padding=k // 2))
            self.embed_norm.append(nn.LayerNorm(d))
            self.blocks.append(nn.ModuleList(TransformerBlock(d, heads[i], srs[i]) for _ in range(depth)))
            self.stage_norm.append(nn.LayerNorm(d))
            cin = d
        self.dec_proj = nn.ModuleList(nn.Linear(d, dec_dim) for d in dims)
        self.fuse = nn.Sequential(nn.Conv3d(4 * dec_dim, dec_dim, 1, bias=False),
                                  nn.BatchNorm3d(dec_dim), nn.ReLU())
        self.head = nn.Conv3d(dec_dim, num_classes, 1)

    def forward(self, x):
        feats = []
        for emb, en, blocks, sn in zip(self.embed, self.embed_norm, self.blocks, self.stage_norm):
            x = emb(x)
            shape = x.shape[2:]
            t = en(_tokens(x))
            for blk in blocks:
                t = blk(t, shape)
            x = _volume(sn(t), shape)
            feats.append(x)
        size = feats[0].shape[2:]
        ups = []
        for i, (f, proj) in enumerate(zip(feats, self.dec_proj)):
            f = _volume(proj(_tokens(f)), f.shape[2:])
            if i > 0:  # stage 1 is already on the target grid
                f = F.interpolate(f, size=size, mode="trilinear", align_corners=False)
            ups.append(f)
        y = self.head(self.fuse(torch.cat(ups[::-1], dim=1)))
        return F.interpolate(y, scale_factor=4.0, mode="trilinear", align_corners=False)


# --------------------------------------------------------------------------- BN U-Net
class DoubleConvBN(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(),
                         nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU())


class UNetBN(nn.Module):
    """Classic U-Net: (Conv-BN-ReLU)x2, MaxPool3d(2) down, nearest Upsample x2 + 1x1 conv up,
    concat skip. torch folds every BN that follows a Conv into the Conv at export."""

    def __init__(self, in_channels=1, num_classes=3, channels=(8, 16, 32, 64)):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = in_channels
        for c in channels:
            self.enc.append(DoubleConvBN(cin, c))
            cin = c
        self.pool = nn.MaxPool3d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.reduce.append(nn.Conv3d(channels[i], channels[i - 1], 1))
            self.dec.append(DoubleConvBN(2 * channels[i - 1], channels[i - 1]))
        self.head = nn.Conv3d(channels[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for red, dec in zip(self.reduce, self.dec):
            x = dec(torch.cat([red(self.upsample(x)), skips.pop()], dim=1))
        return self.head(x)


# --------------------------------------------------------------------------- op-pattern cases
class OpGroupNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16, eps=1e-5)

    def forward(self, x):
        return self.gn(self.conv(x))


class ManualLayerNorm(nn.Module):
    """Channels-first LayerNorm written out by hand (ConvNeXt/MedNeXt style): exports as
    ReduceMean/Sub/Pow/Add/Sqrt/Div/Mul/Add instead of LayerNormalization."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.randn(c) * 0.2)
        self.eps = eps

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class OpLayerNormDecomposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 12, 3, padding=1)
        self.ln = ManualLayerNorm(12)

    def forward(self, x):
        return self.ln(self.conv(x))


class OpConvTransposeOutPad(nn.Module):
    """k3/s2/p1 with output_padding 1 (size 2n), then anisotropic stride (2,2,1) with
    output_padding (1,1,0) and a bias, then k2/s2 without padding."""

    def __init__(self):
        super().__init__()
        self.t1 = nn.ConvTranspose3d(2, 6, 3, stride=2, padding=1, output_padding=1)
        self.t2 = nn.ConvTranspose3d(6, 4, 3, stride=(2, 2, 1), padding=1, output_padding=(1, 1, 0))
        self.t3 = nn.ConvTranspose3d(4, 2, (2, 1, 2), stride=(2, 1, 2), bias=False)

    def forward(self, x):
        return self.t3(self.t2(self.t1(x)))


class OpConvGroupsDilation(nn.Module):
    """Grouped conv (groups=4) with dilation 2, depthwise conv, anisotropic kernel/stride/pad."""

    def __init__(self):
        super().__init__()
        self.g = nn.Conv3d(4, 16, 3, padding=2, dilation=2, groups=4)
        self.dw = nn.Conv3d(16, 16, 3, padding=(1, 3, 2), dilation=(1, 3, 2), groups=16)
        self.aniso = nn.Conv3d(16, 8, (1, 3, 5), stride=(1, 2, 2), padding=(0, 1, 2), groups=2)

    def forward(self, x):
        return self.aniso(F.relu(self.dw(self.g(x))))


class OpBatchNorm(nn.Module):
    """BatchNorm where torch cannot fold it into a conv (on the input, after MaxPool, after a
    residual add), so BatchNormalization survives export."""

    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm3d(2)
        self.conv = nn.Conv3d(2, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(8)
        self.bn2 = nn.BatchNorm3d(8)

    def forward(self, x):
        y = self.conv(self.bn0(x))
        y = self.bn1(F.max_pool3d(F.relu(y), 2))
        return self.bn2(y + F.avg_pool3d(y, 3, stride=1, padding=1))


class ResEncBlock(nn.Module):
    """nnU-Net's residual encoder block (BasicBlockD): conv-IN-LReLU-conv-IN, plus the skip
    (the input; or AvgPool when strided, then 1x1 conv + IN when the channels change), then
    LReLU. Exports as InstanceNormalization -> Add(norm, skip) -> LeakyRelu."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1)
        self.norm1 = nn.InstanceNorm3d(cout, affine=True)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1)
        self.norm2 = nn.InstanceNorm3d(cout, affine=True)
        skip = []
        if stride > 1:
            skip.append(nn.AvgPool3d(stride, stride))
        if cin != cout:
            skip += [nn.Conv3d(cin, cout, 1, bias=False), nn.InstanceNorm3d(cout, affine=True)]
        self.skip = nn.Sequential(*skip)

    def forward(self, x):
        y = F.leaky_relu(self.norm1(self.conv1(x)), 0.01)
        return F.leaky_relu(self.norm2(self.conv2(y)) + self.skip(x), 0.01)


class OpResEnc(nn.Module):
    """Stem, ResEnc blocks with an identity skip, a 1x1-conv+IN skip and a strided AvgPool skip,
    then SiLU (exported as Mul(x, Sigmoid(x))) and a 1x1 head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.InstanceNorm3d(8, affine=True),
                                  nn.LeakyReLU(0.01))
        self.blocks = nn.Sequential(ResEncBlock(8, 8), ResEncBlock(8, 16), ResEncBlock(16, 16, 2),
                                    ResEncBlock(16, 16))
        self.head = nn.Conv3d(16, 3, 1)

    def forward(self, x):
        return self.head(F.silu(self.blocks(self.stem(x))))


class Interp(nn.Module):
    """conv -> interpolate -> conv -> interpolate, with the given interpolate kwargs."""

    def __init__(self, first: dict, second: dict):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, 1)
        self.c2 = nn.Conv3d(4, 3, 3, padding=1)
        self.first, self.second = first, second

    def forward(self, x):
        x = F.interpolate(self.c1(x), **self.first)
        return F.interpolate(self.c2(x), **self.second)


class OpSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)

    def forward(self, x):
        return torch.softmax(self.conv(x), dim=1)


class OpArgmax(nn.Module):
    """Label-map head: ArgMax over channels, int64 output without the channel axis."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)

    def forward(self, x):
        return torch.argmax(self.conv(x), dim=1)
