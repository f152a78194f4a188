"""ParaDiS: parallelly distributable slimmable neural networks, in pure PyTorch."""

from paradis.bn import calibrate_bn
from paradis.layers import BNStatisticsMissing
from paradis.models import ExtractedSwitch, ParaDiSModel, create_model, list_models, register_model
from paradis.profile import SwitchProfile, format_profiles, profile
from paradis.switch import Switch, parse_switch

__all__ = [
    "BNStatisticsMissing",
    "ExtractedSwitch",
    "ParaDiSModel",
    "Switch",
    "SwitchProfile",
    "calibrate_bn",
    "create_model",
    "format_profiles",
    "list_models",
    "parse_switch",
    "profile",
    "register_model",
]

__version__ = "0.1.0"
