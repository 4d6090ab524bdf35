from __future__ import annotations

import typer

users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
