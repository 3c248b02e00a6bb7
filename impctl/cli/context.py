"""Options shared by every command (`--state`, `--config`) and where they come from."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from impctl.model.record import record

DEFAULT_STATE_PATH = Path("/var/lib/impctl/state.json")
DEFAULT_CONFIG_PATH = Path("/etc/impctl/impctl.toml")
STATE_ENV = "IMPCTL_STATE"
CONFIG_ENV = "IMPCTL_CONFIG"


@record
class Globals:
    state_path: Path
    config_path: Path
    # True when the config path was chosen explicitly: then a missing file is an error
    config_explicit: bool


def resolve_globals(state: Path | None, config: Path | None) -> Globals:
    state_path = state or (Path(os.environ[STATE_ENV]) if os.environ.get(STATE_ENV) else None)
    config_path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    return Globals(
        state_path=state_path or DEFAULT_STATE_PATH,
        config_path=config_path or DEFAULT_CONFIG_PATH,
        config_explicit=config_path is not None,
    )


def get_globals(ctx: typer.Context) -> Globals:
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, Globals):
        return obj
    return resolve_globals(None, None)
