from __future__ import annotations

from typing import Annotated

import typer

payment_app = typer.Typer(help="The simulated payment gateway.")


@payment_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8100,
    hang_seconds: Annotated[
        float, typer.Option(help="How long the slow test card keeps a request waiting")
    ] = 60.0,
) -> None:
    """Run the simulated card gateway as an HTTP service."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from emporium.payment.server import create_gateway_app
    from emporium.payment.simulated import SimulatedGateway

    typer.echo(f"Simulated payment gateway on http://{host}:{port}")
    # Hang-card requests sleep for a minute; don't let them hold up shutdown.
    uvicorn.run(
        create_gateway_app(SimulatedGateway(hang_seconds=hang_seconds)),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
