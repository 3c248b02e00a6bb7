"""Loading the config file (`/etc/impctl/impctl.toml`) and its environment overrides."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from impctl.model.bounded import DocumentError, Limits, load_toml
from impctl.model.config import Config, parse_config, parse_host_port
from impctl.model.errors import ConfigError, PermissionDenied

CLOUD_ENV = "IMPCTL_CLOUD"

# A full config is ~1 KiB and two levels deep (sections of scalars); 64 KiB and 32 levels
# allow any real one with generous comments and bound what a damaged file costs each command.
CONFIG_LIMITS = Limits(max_bytes=64 * 1024, max_depth=32)


def load_config(path: Path, *, explicit: bool = False, cloud: str | None = None) -> Config:
    """The config at `path` (defaults when absent, unless the path was asked for).

    `cloud` (HOST:PORT, from `--cloud`) and then IMPCTL_CLOUD override the
    file's cloud host and port.
    """
    try:
        with path.open("rb") as f:
            data = f.read(CONFIG_LIMITS.max_bytes + 1)  # a byte past the limit: "too large", not all of it
    except FileNotFoundError:
        if not explicit:
            return _override(Config(), cloud)
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise PermissionDenied(f"cannot read config file {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        raw = load_toml(data, CONFIG_LIMITS)
    except DocumentError as exc:
        raise ConfigError(f"config file {path} {exc.reason}") from None
    try:
        config = parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    return _override(config, cloud)


def _override(config: Config, cloud: str | None) -> Config:
    override = cloud or os.environ.get(CLOUD_ENV)
    if override:
        host, port = parse_host_port(override, "--cloud" if cloud else CLOUD_ENV)
        config = dataclasses.replace(config, cloud=dataclasses.replace(config.cloud, host=host, port=port))
    return config
