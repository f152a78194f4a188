"""ParaDiS: parallelly distributable slimmable neural networks, in pure PyTorch.

The names below load on first use, so that light modules (``paradis.switch``, ``paradis.config``)
import without torch: a bad study is rejected in well under a second.
"""

from typing import TYPE_CHECKING

from paradis.util import lazy_names

_LAZY = {
    "BNStatisticsMissing": "paradis.layers",
    "ExtractedSwitch": "paradis.models",
    "ParaDiSModel": "paradis.models",
    "create_model": "paradis.models",
    "list_models": "paradis.models",
    "register_model": "paradis.models",
    "calibrate_bn": "paradis.bn",
    "SwitchProfile": "paradis.costs",
    "format_profiles": "paradis.costs",
    "profile": "paradis.costs",
    "Switch": "paradis.switch",
    "parse_switch": "paradis.switch",
}

__all__ = [  # noqa: RUF022 (grouped as _LAZY)
    "BNStatisticsMissing",
    "ExtractedSwitch",
    "ParaDiSModel",
    "create_model",
    "list_models",
    "register_model",
    "calibrate_bn",
    "SwitchProfile",
    "format_profiles",
    "profile",
    "Switch",
    "parse_switch",
]
__version__ = "0.1.0"


__getattr__ = lazy_names("paradis", _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from paradis.bn import calibrate_bn
    from paradis.costs import SwitchProfile, format_profiles, profile
    from paradis.layers import BNStatisticsMissing
    from paradis.models import ExtractedSwitch, ParaDiSModel, create_model, list_models, register_model
    from paradis.switch import Switch, parse_switch
