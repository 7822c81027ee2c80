"""The MLP ranker of AnalogNAS: a small MLP trained with the pairwise hinge loss (needs torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class MLPParams:
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    epochs: int = 300
    lr: float = 1e-3
    margin: float = 0.1
    """Pairwise hinge loss margin m: loss = max(0, m - (s_i - s_j)) for y_i > y_j."""
    weight_decay: float = 1e-4



class MLPRanker(nn.Module):
    """Small MLP scoring architectures, trained with the pairwise hinge loss (as in AnalogNAS)."""

    def __init__(self, n_features: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(-1)

    @torch.no_grad()
    def score(self, x: np.ndarray) -> np.ndarray:
        self.eval()
        return self(torch.as_tensor(x, dtype=torch.float32)).numpy()


def fit_mlp_ranker(x: np.ndarray, y: np.ndarray, params: MLPParams, seed: int) -> MLPRanker:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    model = MLPRanker(x.shape[1], params.hidden)
    model.mean.copy_(xt.mean(0))
    model.std.copy_(xt.std(0).clamp_min(1e-6))
    i, j = torch.meshgrid(torch.arange(len(y)), torch.arange(len(y)), indexing="ij")
    better = yt[i] > yt[j]
    pi, pj = i[better], j[better]  # every ordered pair (i better than j)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    model.train()
    for _ in range(params.epochs):
        perm = torch.randperm(len(pi), generator=gen)[: min(len(pi), 20000)]
        s = model(xt)
        loss = torch.clamp(params.margin - (s[pi[perm]] - s[pj[perm]]), min=0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model
