"""aihwkit's ``AnalogSGD`` with the tiles' weight clipping done in place, in one batch.

With aihwkit's torch tiles (the fast path's and the reference's) the weights are ordinary
parameters updated by ``torch.optim.SGD``; after the update each tile's ``post_update_step``
clips them (``weight.data = clamp(weight, -v, v)``: a new tensor per tile and step) and remaps
them if configured. Here the fixed-value clipping of all tiles runs in place as two
``torch._foreach_*`` calls per clip value (one launch each on CUDA for up to hundreds of
tensors); any other post-update step (other clip types, remapping, non-torch tiles) is
aihwkit's own, unchanged. The values are identical.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from aihwkit.optim import AnalogSGD
from aihwkit.optim.context import AnalogContext
from aihwkit.simulator.parameters.enums import WeightClipType, WeightRemapType
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile


def _clip_value(tile: Any) -> Optional[float]:
    """What a tile's post-update step does, when this optimizer can do it itself: the fixed clip
    value (``inf``: nothing at all). ``None``: call aihwkit's ``post_update_step``."""
    rpu = tile.rpu_config
    if type(tile).post_update_step is not TorchInferenceTile.post_update_step:
        return None
    if getattr(rpu, "remap", None) is not None and rpu.remap.type != WeightRemapType.NONE:
        return None
    if rpu.clip.type == WeightClipType.NONE:
        return float("inf")
    return float(rpu.clip.fixed_value) if rpu.clip.type == WeightClipType.FIXED_VALUE else None


class FastAnalogSGD(AnalogSGD):
    """``AnalogSGD`` whose post-update weight clipping is in place and batched (module docstring)."""

    @torch.no_grad()
    def _post_update(self) -> None:
        clipped: dict[float, list[torch.Tensor]] = {}
        for group in self.param_groups:
            for param in group["params"]:
                if isinstance(param, AnalogContext):
                    value = _clip_value(param.analog_tile)
                    if value is None:
                        param.analog_tile.post_update_step()
                    elif value != float("inf"):
                        clipped.setdefault(value, []).append(param.analog_tile.tile.weight.data)
        for value, weights in clipped.items():
            torch._foreach_clamp_max_(weights, value)
            torch._foreach_clamp_min_(weights, -value)

    def step(self, closure: Optional[Callable] = None, **kwargs: Any) -> Optional[float]:
        # Tiles that ran through aihwkit's AnalogFunction (the reference path) hold an update for
        # AnalogSGD's own loop; the fast path's never do: their weights are plain parameters.
        if any(isinstance(p, AnalogContext) and p.has_gradient() for g in self.param_groups for p in g["params"]):
            return super().step(closure, **kwargs)
        loss = torch.optim.SGD.step(self, closure)
        self._post_update()
        return loss
