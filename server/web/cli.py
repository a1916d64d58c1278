"""An app's command group, run in an app of the caller's choosing: the commands are the app's
own (flask AppGroup commands, which use the current app), and the app is built only when one of
them runs, after its arguments are parsed, never for `--help` or a usage error."""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable

import click
from flask import Flask


class InApp(click.Group):
    """`group`'s commands, each run in the app `make_app()` builds when it is invoked (pushed
    over whatever app is current: flask's with_appcontext then finds it)."""

    def __init__(self, group: click.Group, make_app: Callable[[], Flask], name: str | None = None):
        commands = {key: _in_app(command, make_app) for key, command in group.commands.items()}
        super().__init__(name or group.name, commands=commands, help=group.help)


def _in_app(command: click.Command, make_app: Callable[[], Flask]) -> click.Command:
    if command.callback is None:
        return command
    run = command.callback

    @functools.wraps(run)
    def in_app(*args: Any, **kwargs: Any) -> Any:
        with make_app().app_context():
            return run(*args, **kwargs)

    made = copy.copy(command)
    made.callback = in_app
    return made
