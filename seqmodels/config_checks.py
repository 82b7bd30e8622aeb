"""Refuse configurations that cannot work, before any data is read or any file written."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from seqmodels.tasks.char_lm import require_causal


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option."""


def check_config(cfg: DictConfig) -> None:
    """Checks that span groups (model x task); each module checks its own numbers too."""
    model = cfg.model
    if cfg.task.name == "char_lm":
        require_causal(OmegaConf.to_container(model))
    for option in ("hidden_size", "num_layers", "embedding_dim"):
        value = model.get(option)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"model.{option} must be a positive integer, got {value!r}")
    dropout = model.get("dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
