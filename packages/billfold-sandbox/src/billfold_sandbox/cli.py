"""`billfold-sandbox serve` (and `billfold sandbox serve`): the Stripe sandbox as a server."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

sandbox_app = typer.Typer(help="The Stripe sandbox (a stateful Stripe API).", no_args_is_help=True)
console = Console()


@sandbox_app.callback()
def _group() -> None:
    """The Stripe sandbox: a stateful Stripe API, offline (`serve --help` for the options)."""


def main() -> None:
    """The `billfold-sandbox` console script."""
    sandbox_app(prog_name="billfold-sandbox")


@sandbox_app.command("serve")
def serve(
    port: int = typer.Option(12111, help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on (loopback unless you say otherwise)."
    ),
    state_file: Path | None = typer.Option(
        None,
        "--state-file",
        help="Keep the sandbox's world in this file (a snapshot, plus a journal beside it).",
    ),
    fsync: bool = typer.Option(
        False, "--fsync", help="fsync each change: survive a power cut, not only a kill -9."
    ),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="Accept only these secret keys (default: any sk_test_ key)."
    ),
) -> None:
    """Serve the Stripe sandbox; point any Stripe SDK's API base at it."""
    import uvicorn

    from billfold_sandbox.app import create_sandbox_app
    from billfold_sandbox.state import SandboxState
    from billfold_sandbox.version import API_VERSION

    keys = set(api_key) or None
    app = create_sandbox_app(SandboxState(state_file, api_keys=keys, fsync=fsync), api_keys=keys)
    console.print(f"Stripe sandbox listening on http://{host}:{port}")
    console.print(f"  Stripe API version: {API_VERSION}")
    console.print(f"  state: {state_file or 'in memory'}")
    console.print("  API key: any sk_test_... key" if not api_key else "  API keys: as given")
    uvicorn.run(app, host=host, port=port, log_level="warning")
