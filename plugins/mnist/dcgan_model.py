"""The reproduction's conditional DCGAN generator (the "GAN" baseline of Table 3).

Input ``[u (32), Embedding(10, 10)(y)]`` as a 42x1x1 map -> ConvT4 (s1) -> 4x4 -> ConvT4 s2 ->
8x8 -> ConvT4 s2 -> 16x16 -> ConvT4 s2 -> 32x32, widths 256, 128, 64, 3, BN + LeakyReLU(0.2)
between, Tanh at the end, no biases: 831,460 parameters. Trained with :class:`DiscLin` (512),
BCE with logits, batch 16, Adam 2e-4 (cgn-reference.md section 3). The paper's own GAN baseline
is unspecified.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DCGANGenerator"]


class DCGANGenerator(nn.Module):
    """Conditional DCGAN generator: ``forward(y, u=None, generator=None) -> [B, 3, 32, 32]``."""

    def __init__(self, n_classes: int = 10, latent_dim: int = 32, ngf: int = 64):
        super().__init__()
        self.n_classes, self.latent_dim = n_classes, latent_dim
        self.label_emb = nn.Embedding(n_classes, n_classes)
        cin = latent_dim + n_classes
        self.model = nn.Sequential(
            nn.ConvTranspose2d(cin, 4 * ngf, 4, 1, 0, bias=False),
            nn.BatchNorm2d(4 * ngf),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(
        self, y: Tensor, u: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        if u is None:
            dev = self.label_emb.weight.device
            where = generator.device if generator is not None else dev
            u = torch.randn(y.shape[0], self.latent_dim, generator=generator, device=where).to(dev)
        z = torch.cat([u, self.label_emb(y)], dim=-1)
        return self.model(z[:, :, None, None])
