from __future__ import annotations

import typer

payment_app = typer.Typer(help="The simulated payment gateway.")
