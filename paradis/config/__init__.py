"""The typed run configuration (:mod:`paradis.config.schema`) and how it is read
(:mod:`paradis.config.loading`). Torch-free: a bad configuration is refused in a fraction of a second."""

from paradis.config.loading import (
    apply_overrides,
    format_validation_error,
    load_run_config,
    read_yaml,
    set_key,
    validate,
)
from paradis.config.schema import (
    DEFAULT_PARADIS_SWITCHES,
    PAPER_TABLE_SWITCHES,
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    OptimizerConfig,
    ParecoConfig,
    RunConfig,
    ScheduleConfig,
    SRDataConfig,
    Strict,
    TrainingConfig,
    USConfig,
)

__all__ = [
    "DEFAULT_PARADIS_SWITCHES",
    "PAPER_TABLE_SWITCHES",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParecoConfig",
    "RunConfig",
    "SRDataConfig",
    "ScheduleConfig",
    "Strict",
    "TrainingConfig",
    "USConfig",
    "apply_overrides",
    "format_validation_error",
    "load_run_config",
    "read_yaml",
    "set_key",
    "validate",
]
