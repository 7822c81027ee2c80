"""A user's own search strategy, importable by class_path: jsonargparse builds it from its signature."""

from typing import Optional

from lightning_nas.search.core import Strategy


class FreshBatches(Strategy):
    """Asks ``batch`` fresh seeded architectures a round and learns nothing."""

    def __init__(self, batch: int = 4, seed: Optional[int] = None) -> None:
        self.batch, self.seed = batch, seed

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.stream = ctx.fresh(self.run_seed)

    def ask(self):
        return [next(self.stream) for _ in range(self.batch)]

    def tell(self, archs, individuals) -> None:
        pass


class SeedZero(FreshBatches):
    """A strategy written before strategies followed search.seed: its seed defaults to 0."""

    def __init__(self, batch: int = 4, seed: int = 0) -> None:
        super().__init__(batch, seed)
