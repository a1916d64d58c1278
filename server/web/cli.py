"""An app's command group run outside `flask`: the commands are the app's own (AppGroup
commands, which use the current app), and the app is built only when one of them runs, never for
`--help` or a usage error."""

from __future__ import annotations

from typing import Any, Callable

import click
from flask import Flask


class InApp(click.Group):
    """`group`'s commands, run in the app `make_app()` builds when a command is invoked."""

    def __init__(self, group: click.Group, make_app: Callable[[], Flask], name: str | None = None):
        super().__init__(name or group.name, commands=group.commands, help=group.help)
        self.make_app = make_app

    def invoke(self, ctx: click.Context) -> Any:
        # The pushed context is what AppGroup's commands find as current_app (flask's
        # with_appcontext loads an app of its own only when none is current).
        ctx.with_resource(self.make_app().app_context())
        return super().invoke(ctx)
