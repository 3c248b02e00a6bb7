"""Loading the config file (`/etc/impctl/impctl.toml`) and its environment overrides."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from impctl.model.config import Config, parse_config, parse_host_port
from impctl.model.errors import ConfigError, PermissionDenied

CLOUD_ENV = "IMPCTL_CLOUD"


def load_config(path: Path, *, explicit: bool = False, cloud: str | None = None) -> Config:
    """The config at `path` (defaults when absent, unless the path was asked for).

    `cloud` (HOST:PORT, from `--cloud`) and then IMPCTL_CLOUD override the
    file's cloud host and port.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        raw = {}
    except PermissionError:
        raise PermissionDenied(f"cannot read config file {path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        config = parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    override = cloud or os.environ.get(CLOUD_ENV)
    if override:
        host, port = parse_host_port(override, "--cloud" if cloud else CLOUD_ENV)
        config = dataclasses.replace(config, cloud=dataclasses.replace(config.cloud, host=host, port=port))
    return config
