"""A reinforcement-learning controller (Zoph & Le, 2017): an LSTM emits the architecture decisions
one after another (stem channels, kernel, number of stages, then each stage's R, B, block type,
widening and skip), each conditioned on the previous ones through its state, and is trained with
REINFORCE: the gradient of the log-probability of each sampled architecture times its advantage
(fitness minus a moving-average baseline, scaled by the running spread). Architectures over
max_params or infeasible get the batch's worst reward. Each round the controller samples
``oversample`` times the batch and keeps the new architectures first, so a sharpening policy
still spends its evaluation budget. Decisions of stages an architecture does
not have are not sampled (the sequence stops there)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from lightning_nas.search.core import SearchContext, Strategy, best_of
from lightning_nas.space import Architecture


class Reinforce(Strategy):
    def __init__(self, hidden: int = 64, lr: float = 0.0005, baseline_decay: float = 0.9, entropy: float = 0.001,
                 oversample: int = 3, seed: Optional[int] = None) -> None:
        """
        Args:
            hidden: the LSTM controller's hidden size.
            lr: the controller's Adam learning rate.
            baseline_decay: decay of the moving-average reward baseline (and spread).
            entropy: weight of the entropy bonus that keeps the policy exploring.
            oversample: architectures sampled a round, as a multiple of the batch (new ones first).
            seed: this strategy's seed; null: ``search.seed``.
        """
        if hidden < 1 or not lr > 0 or not 0 <= baseline_decay < 1:
            raise ValueError("hidden must be >= 1, lr > 0 and baseline_decay in [0, 1)")
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.hidden, self.lr, self.decay, self.entropy, self.seed = hidden, lr, baseline_decay, entropy, seed
        self.oversample = oversample

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        import torch
        from torch import nn

        self.torch = torch
        self.generator = torch.Generator().manual_seed(self.run_seed)
        torch.manual_seed(self.run_seed)
        self.genes = ctx.space.genome  # the decisions, one per gene, in order
        width = max(len(g.dim.choices) for g in self.genes)
        self.cell = nn.LSTMCell(self.hidden, self.hidden)
        self.embed = nn.Embedding(len(self.genes) * width + 1, self.hidden)  # (step, choice) of the previous decision
        self.heads = nn.ModuleList(nn.Linear(self.hidden, len(g.dim.choices)) for g in self.genes)
        self.width = width
        params = [*self.cell.parameters(), *self.embed.parameters(), *self.heads.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=self.lr)
        self.baseline, self.spread = None, 1.0
        self.first = True
        self.kept: list[Any] = []

    def population(self) -> list:
        return self.kept

    def _rollout(self, n: int) -> tuple[list[Architecture], Any, Any]:
        """Sample ``n`` architectures; returns them, their log-probabilities and entropies."""
        torch = self.torch
        h = torch.zeros(n, self.hidden)
        c = torch.zeros(n, self.hidden)
        token = torch.full((n,), len(self.genes) * self.width, dtype=torch.long)  # start token
        logp = torch.zeros(n)
        entropy = torch.zeros(n)
        choices = torch.zeros(n, len(self.genes), dtype=torch.long)
        depth = self.ctx.space.depth
        m: Any = None
        for step, gene in enumerate(self.genes):
            h, c = self.cell(self.embed(token), (h, c))
            dist = torch.distributions.Categorical(logits=self.heads[step](h))
            pick = torch.multinomial(dist.probs, 1, generator=self.generator).squeeze(1)
            active = torch.ones(n) if gene.stage is None else (gene.stage < m).float()  # stages the architecture has
            logp = logp + active * dist.log_prob(pick)
            entropy = entropy + active * dist.entropy()
            choices[:, step] = pick
            token = step * self.width + pick
            if gene.dim is depth:
                m = torch.as_tensor(depth.choices)[pick]
        archs = [self.ctx.space.decode(row) for row in choices.tolist()]
        return archs, logp, entropy

    def ask(self) -> list[Architecture]:
        """``n`` rollouts, preferring new architectures: the controller samples ``oversample`` x ``n``
        and the first ``n`` new ones (then repeats, if too few are new) are asked and trained on."""
        n = self.ctx.cfg.population if self.first else self.ctx.cfg.batch
        self.first = False
        archs, logp, ent = self._rollout(self.oversample * n)
        new, seen = [], set()
        for k, a in enumerate(archs):
            if a not in seen and not self.ctx.is_evaluated(a) and self.ctx.within_budget(a):
                new.append(k)
                seen.add(a)
        order = (new + [k for k in range(len(archs)) if k not in set(new)])[:n]
        index = self.torch.as_tensor(order)
        self.archs, self.logp, self.ent = [archs[k] for k in order], logp[index], ent[index]
        return self.archs

    def tell(self, archs, individuals) -> None:
        rewards = np.asarray([i.fitness if i is not None and i.feasible else np.nan for i in individuals])
        if np.isnan(rewards).all():
            worst = self.baseline - self.spread if self.baseline is not None else 0.0
        else:
            worst = np.nanmin(rewards)
        rewards = np.where(np.isnan(rewards), worst, rewards)
        mean = float(rewards.mean())
        self.baseline = mean if self.baseline is None else self.decay * self.baseline + (1 - self.decay) * mean
        self.spread = self.decay * self.spread + (1 - self.decay) * float(rewards.std() + 1e-6)
        advantage = self.torch.as_tensor((rewards - self.baseline) / self.spread, dtype=self.torch.float32)
        loss = -(advantage * self.logp).mean() - self.entropy * self.ent.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.kept = best_of(self.kept + [i for i in individuals if i is not None], self.ctx.cfg.population)
