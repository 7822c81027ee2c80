"""The LightningModule: one architecture of the space, trained hardware-aware on analog layers."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any, Literal, Mapping, Optional, Union

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from lightning_nas.analog import AnalogConfig
from lightning_nas.compilation import Compile, CompiledNetwork, compile_mode
from lightning_nas.conversion import allow_analog_checkpoints, convert, is_analog
from lightning_nas.errors import UserError
from lightning_nas.network import build_network
from lightning_nas.space import MAX_BUILD_PARAMS, load_architecture, n_params



class PercentAccuracy(MulticlassAccuracy):
    """Top-1 accuracy in %, the unit of every accuracy a user reads here (``train/acc``,
    ``val/acc``, ``test/acc`` beside ``analog/acc_1d``, campaign rows, surrogate predictions)."""

    def compute(self) -> torch.Tensor:
        return 100.0 * super().compute()

class AnalogNASModule(L.LightningModule):
    """Train one search-space architecture hardware-aware on aihwkit analog layers.

    Args:
        architecture: a preset name (``resnet20``, ``resnet32``, ...), an inline
            mapping (``{out_channel0: 16, kernel0: 3, stages: [...]}``) or a path to a
            YAML architecture file (as written by ``search``).
        analog: the analog preset and overrides (:class:`~lightning_nas.analog.AnalogConfig`).
        input_shape: ``(C, H, W)`` of one example; the CLI links it from the datamodule.
        num_classes: number of classes; the CLI links it from the datamodule.
        lr: SGD learning rate. The optimizer is aihwkit's ``AnalogSGD`` with its weight clipping
            in place (:class:`~lightning_nas.analog_sgd.FastAnalogSGD`): plain SGD for the
            parameters plus the analog post-update steps (weight clipping).
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        nesterov: Nesterov momentum.
        lr_schedule: ``cosine`` (to 0 over ``trainer.max_epochs``), ``step``
            (x0.1 at 50% and 75% of the epochs) or ``constant``.
        digital_warmup_epochs: epochs trained as a plain digital network before
            the layers are converted to analog for hardware-aware training.
        digital_warmup_fraction: the same as a share of ``trainer.max_epochs`` (rounded, at
            least 1, at most ``max_epochs - 1``; not with ``digital_warmup_epochs``).
        label_smoothing: cross-entropy label smoothing.
        input_range_calibration: batches of training data (seeded sample) whose digital pass
            sets every tile's learned input range to ``init_std_alpha`` x the RMS of the
            layer's input when hardware-aware training starts
            (:mod:`lightning_nas.calibration`); ``0`` leaves aihwkit's own initialisation from
            data (``init_std_alpha`` x the input's std over ``init_from_data`` batches), which
            keeps many architectures at chance. Presets without learned input ranges ignore it.
        compile: run the network through ``torch.compile`` as one graph per step
            (:mod:`lightning_nas.compilation`): ``auto`` (compiled on CUDA once the network
            is analog, eager on the CPU, where the native periphery is faster), ``off``, or a
            ``torch.compile`` mode (``default``, ``reduce-overhead``: also CUDA graphs,
            ``max-autotune``). The same training either way: not part of a campaign's identity.
    """

    def __init__(
        self,
        architecture: Union[str, dict[str, Any]] = "resnet20",
        analog: AnalogConfig = AnalogConfig(),
        input_shape: tuple[int, int, int] = (1, 8, 8),
        num_classes: int = 10,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        lr_schedule: Literal["cosine", "step", "constant"] = "cosine",
        digital_warmup_epochs: int = 0,
        digital_warmup_fraction: float = 0.0,
        label_smoothing: float = 0.0,
        input_range_calibration: int = 20,
        compile: Compile = "auto",
    ) -> None:
        super().__init__()
        allow_analog_checkpoints()  # before any checkpoint of this model is loaded (e.g. fit --ckpt_path)
        if isinstance(analog, Mapping):  # as stored in a checkpoint's hparams
            analog = AnalogConfig(**analog)
        self.analog_config = analog.resolved()
        self.arch = load_architecture(architecture)
        self.save_hyperparameters()
        # Store what was resolved, so a checkpoint reloads without the YAML file or preset table.
        self.hparams["architecture"] = self.arch.to_dict()
        self.hparams["analog"] = asdict(self.analog_config)
        if digital_warmup_epochs < 0:
            raise UserError(f"digital_warmup_epochs must be >= 0, got {digital_warmup_epochs}")
        if not 0 <= digital_warmup_fraction < 1:
            raise UserError(f"digital_warmup_fraction must be in [0, 1) (a share of trainer.max_epochs), "
                            f"got {digital_warmup_fraction}")
        if digital_warmup_fraction and digital_warmup_epochs:
            raise UserError("give digital_warmup_epochs or digital_warmup_fraction, not both "
                            f"(got {digital_warmup_epochs} and {digital_warmup_fraction})")
        if lr <= 0:
            raise UserError(f"lr must be > 0, got {lr}")
        if isinstance(input_range_calibration, bool) or not isinstance(input_range_calibration, int) \
                or input_range_calibration < 0:
            raise UserError(f"input_range_calibration must be an integer >= 0 (batches; 0 = off), "
                            f"got {input_range_calibration!r}")
        compile_mode(compile, torch.device("cpu"), True)  # a bad value fails here, not at the first batch
        self._runner: Optional[CompiledNetwork] = None
        self.calibrated = False
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.n_params = n_params(self.arch, self.input_shape, num_classes)
        if self.n_params > MAX_BUILD_PARAMS:
            raise UserError(f"architecture {self.arch.describe()} has {self.n_params:,} parameters for input "
                            f"{self.input_shape}, more than the limit of {MAX_BUILD_PARAMS:,}; choose a smaller one")
        self.net = build_network(self.arch, self.input_shape, num_classes)
        if digital_warmup_epochs == 0 and digital_warmup_fraction == 0:
            self.convert_to_analog()
        metric = PercentAccuracy(num_classes=num_classes, average="micro")
        self.train_acc, self.val_acc, self.test_acc = metric.clone(), metric.clone(), metric.clone()

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> "AnalogNASModule":  # type: ignore[override]
        """Lightning's ``load_from_checkpoint`` with aihwkit's classes allowed for ``weights_only`` loading."""
        allow_analog_checkpoints()
        return super().load_from_checkpoint(*args, **kwargs)

    def hardware_cost(self, chip: Any = None) -> Any:
        """Tiles, MVMs, latency and energy of one inference on this model's analog hardware
        (:func:`lightning_nas.hardware_cost.hardware_cost`)."""
        from lightning_nas.hardware_cost import hardware_cost

        return hardware_cost(self.arch, self.input_shape, self.num_classes, self.analog_config.tile_size, chip)

    # -- analog conversion --------------------------------------------------------------
    @property
    def is_analog(self) -> bool:
        return is_analog(self.net)

    def convert_to_analog(self) -> None:
        """Replace every Conv2d/Linear of the network by aihwkit analog layers (keeps weights)."""
        if not self.is_analog:
            self.net = convert(self.net, self.analog_config).to(self.device)

    def on_train_start(self) -> None:
        if self.is_analog and not self.calibrated:  # analog from the start: calibrate on a digital copy
            self.calibrate_input_ranges(digital=None)

    @property
    def warmup_epochs(self) -> int:
        """Digital warm-up epochs of this run: ``digital_warmup_epochs``, or
        ``round(digital_warmup_fraction x trainer.max_epochs)`` kept within 1 .. max_epochs - 1 (a
        1-epoch run has none): a short run still starts digital, and always ends hardware-aware."""
        return self.warmup_for(self.hparams.digital_warmup_epochs, self.hparams.get("digital_warmup_fraction", 0.0),
                               self.trainer.max_epochs if self._trainer is not None else None)

    @classmethod
    def check_epochs(cls, epochs: int, fraction: float, max_epochs: Optional[int]) -> None:
        """Refuse a run length the recipe can't train: a warm-up fraction without a positive
        ``max_epochs``, or a warm-up that leaves no hardware-aware epoch (``fit`` checks this before
        it builds anything; the module again when fitting starts)."""
        if fraction and (max_epochs is None or max_epochs < 1):
            raise UserError(f"digital_warmup_fraction needs a positive trainer.max_epochs (the run's length), got "
                            f"{max_epochs}; give --trainer.max_epochs N (N >= 2), or digital_warmup_epochs instead")
        warmup = cls.warmup_for(epochs, fraction, max_epochs)
        if max_epochs is not None and 0 <= max_epochs <= warmup:
            raise UserError(f"model.digital_warmup_epochs ({warmup}) must be smaller than trainer.max_epochs "
                            f"({max_epochs}), or the network never trains hardware-aware; lower "
                            f"--model.init_args.digital_warmup_epochs (0 = analog from the first step)")

    @staticmethod
    def warmup_for(epochs: int, fraction: float, max_epochs: Optional[int]) -> int:
        """The rule of :attr:`warmup_epochs` for given arguments and run length."""
        if fraction and max_epochs is not None and max_epochs > 0:
            return min(max(1, round(fraction * max_epochs)), max_epochs - 1)
        return epochs

    def on_train_epoch_start(self) -> None:
        if not self.is_analog and self.current_epoch >= self.warmup_epochs:
            digital = self.net
            self.convert_to_analog()
            self.calibrate_input_ranges(digital)
            # The parameters changed: rebuild the optimizer (and schedule) for them.
            self.trainer.strategy.setup_optimizers(self.trainer)
            with warnings.catch_warnings():  # fast-forward the fresh schedule to this epoch
                warnings.simplefilter("ignore", UserWarning)
                for config in self.trainer.lr_scheduler_configs:
                    for _ in range(self.current_epoch):
                        config.scheduler.step()

    def calibrate_input_ranges(self, digital: Optional[torch.nn.Module]) -> dict[str, float]:
        """Set the tiles' input ranges from a digital pass (``digital``: the network before
        conversion; ``None``: a digital copy of the analog one) over ``input_range_calibration``
        seeded training batches. The global random state is left as it was."""
        batches = self.hparams.input_range_calibration
        self.calibrated = True
        if not batches or not self.analog_config.input_range or self._trainer is None:
            return {}
        from lightning_nas import calibration

        loader = self.trainer.train_dataloader
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same sample of batches in every run
            if digital is None:
                digital = calibration.digital_copy(self.net, build_network(self.arch, self.input_shape,
                                                                           self.num_classes).to(self.device))
            sample = torch.utils.data.DataLoader(
                loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn,
                sampler=torch.utils.data.RandomSampler(loader.dataset, replacement=False,
                                                       num_samples=min(len(loader.dataset),
                                                                       batches * loader.batch_size)))
            was_training = digital.training
            digital.train()  # batch statistics, as in the first training steps
            rms = calibration.input_rms(digital, (x.to(self.device) for x, *_ in sample))
            digital.train(was_training)
        return calibration.set_input_ranges(self.net, rms)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_runner"] = None  # a copy compiles its own network
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["analog_converted"] = self.is_analog
        checkpoint["input_ranges_calibrated"] = self.calibrated

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("analog_converted", True):
            self.convert_to_analog()
        self.calibrated = checkpoint.get("input_ranges_calibrated", True)  # a resumed run keeps its ranges
        _match_analog_contexts(self, checkpoint.get("state_dict", {}))
        if self._runner is not None:
            self._runner.reset()  # the input ranges' counters were overwritten

    # -- steps ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runner = self._runner
        if runner is None or runner.net is not self.net:  # first batch, or the network was converted
            mode = compile_mode(self.hparams.get("compile", "auto"), x.device, self.is_analog)
            runner = self._runner = CompiledNetwork(self.net, mode) if mode else None
        return runner(x) if runner is not None else self.net(x)

    def _step(self, batch: Any, stage: str, metric: "PercentAccuracy") -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        metric(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}/acc", metric, on_step=on_step, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train", self.train_acc)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged: loss is {loss.item()} at epoch {self.current_epoch}, "
                                     f"batch {batch_idx}; lower model.lr")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    # -- optimisation ------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        from lightning_nas.analog_sgd import FastAnalogSGD

        hp = self.hparams
        optimizer = FastAnalogSGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                              weight_decay=hp.weight_decay, nesterov=hp.nesterov and hp.momentum > 0)
        epochs = max(1, self.trainer.max_epochs or 1) if self._trainer is not None else 1
        if hp.lr_schedule == "constant":
            return optimizer
        if hp.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=[max(1, epochs // 2), max(1, 3 * epochs // 4)], gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_fit_start(self) -> None:
        if not self.is_analog:
            self.check_epochs(self.hparams.get("digital_warmup_epochs", 0),
                              self.hparams.get("digital_warmup_fraction", 0.0), self.trainer.max_epochs)
        rank_zero_info(f"architecture {self.arch.id} {self.arch.describe()}: {self.n_params:,} parameters, "
                   f"analog preset {self.analog_config.preset!r}")


def _match_analog_contexts(module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Give each aihwkit ``analog_ctx`` entry of a checkpoint's ``state`` the shape the installed
    aihwkit has. The entry holds no weights (they are the ``tile.weight`` entries): aihwkit 1.1.0
    (Python 3.11) keeps a 0-d placeholder (1.0) and loads it, 1.2.0 (Python 3.12) a placeholder of
    the weights' shape that it skips when loading; without this a checkpoint written with 1.2.0
    fails to load with 1.1.0 ("output with shape [] doesn't match the broadcast shape")."""
    params = dict(module.named_parameters())
    for key, value in state.items():
        own = params.get(key) if key.endswith("analog_ctx") else None
        if own is not None and torch.is_tensor(value) and value.shape != own.shape:
            state[key] = torch.ones(own.shape, dtype=own.dtype)
