"""Every command line is one click group (server/console.py): `--help` answers on every command
and subcommand without building an app, usage errors exit with 2, and the apps' own command
groups run in the app they belong to, from `coursesync` and from `flask --app server.api` alike."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from flask import current_app

from server.api import create_app, create_hub_app
from server.console import cli, main, run, serve
from server.core.config import Settings
from server.hub import commands as hub_commands


def command_lines(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += command_lines(command, ctx, (*path, name))
    return found


def test_every_command_and_subcommand_answers_help_without_building_an_app(monkeypatch):
    def no_app(*args, **kwargs):
        raise AssertionError("--help built an app")

    monkeypatch.setattr("server.api.create_app", no_app)
    monkeypatch.setattr("server.api.create_hub_app", no_app)
    lines = command_lines(cli, click.Context(cli))
    assert {("serve",), ("seed",), ("seed-mongo",), ("sync", "once"), ("hub", "add-device"), ("hub", "purge")} \
        <= set(lines)
    for line in [(), *lines]:
        result = CliRunner().invoke(cli, [*line, "--help"], prog_name="coursesync")
        assert result.exit_code == 0, (line, result.output)
        assert result.output.startswith(f"Usage: {' '.join(('coursesync', *line))} "), result.output


def test_usage_errors_exit_with_2_and_help_with_0(capsys):
    assert main(["nothing"]) == 2
    assert main(["seed", "--no-such-flag"]) == 2
    assert run(serve, ["--no-such-flag"], prog="python -m server") == 2
    assert "Usage: python -m server [OPTIONS]" in capsys.readouterr().err
    assert run(serve, ["--help"], prog="python -m server") == 0
    assert "--hub" in capsys.readouterr().out


@pytest.fixture
def settings(tmp_path):
    return Settings(db_connector="sql", sqlite_path=str(tmp_path / "store.sqlite3"))


@pytest.fixture
def store(settings, sql_factory):
    made = sql_factory("store", user_id="hub-owner")
    made.connect()
    return made


def test_coursesync_sync_runs_in_a_device_app(settings, store, monkeypatch, capsys):
    monkeypatch.setattr("server.api.create_app", lambda **kw: create_app(settings, store=store, **kw))
    assert main(["sync", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["enabled"] is False and status["deviceId"] == store.origin


def test_coursesync_hub_runs_in_a_hub_app(settings, store, monkeypatch, capsys):
    apps = []

    def hub_app():
        apps.append(create_hub_app(settings, store=store))
        return apps[-1]

    monkeypatch.setattr("server.api.create_hub_app", hub_app)
    assert main(["hub", "add-device", "learner", "--name", "phone"]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    assert token.startswith("csh_") and len(apps) == 1
    assert [d.name for d in apps[0].extensions["registry"].devices("learner")] == ["phone"]
    apps[0].extensions["hub_stores"].close()


def test_flask_hub_commands_run_in_a_hub_app_over_the_device_apps_store(settings, store, monkeypatch):
    device_app = create_app(settings, store=store, start_sync=False)
    ran_in = []
    registry = hub_commands._registry
    monkeypatch.setattr(hub_commands, "_registry",
                        lambda: ran_in.append(current_app._get_current_object()) or registry())
    result = device_app.test_cli_runner().invoke(args=["hub", "add-device", "learner"])
    assert result.exit_code == 0, result.output
    [app] = ran_in
    assert app is not device_app and "hub_stores" in app.extensions and app.extensions["store"] is store
    app.extensions["hub_stores"].close()
