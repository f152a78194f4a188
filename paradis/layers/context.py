"""What one forward pass of a switch tells every layer it goes through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paradis.switch import Switch

BNUpdate = Literal["momentum", "cumulative", "none"]


@dataclass(frozen=True)
class SwitchContext:
    """Passed explicitly down the module tree by ``model(x, switch=...)``; never stored on layers.

    ``bn_update`` says what a training-mode BN does with the switch's running statistics:
    ``momentum`` (exponential average, as in training), ``cumulative`` (an exact average over the
    batches seen since the last reset, used by calibration) or ``none``.
    ``grouped`` runs equal-width sub-networks of a layer as one grouped operation; ``False`` runs them
    one after another (the reference path, kept for tests and benchmarks).
    """

    switch: Switch
    bn_update: BNUpdate = "momentum"
    grouped: bool = True
