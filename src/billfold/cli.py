"""The `billfold` command."""

from __future__ import annotations

import asyncio
import sys

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from billfold.audit.cli import audit_app
from billfold.auth.cli import apikey_app
from billfold.catalog.cli import catalog_app
from billfold.config import get_settings
from billfold.credits.cli import credits_app
from billfold.errors import BillfoldError
from billfold.jobs.cli import jobs_app
from billfold.ledger.cli import ledger_app
from billfold.stripe import cli as stripe_cli
from billfold.stripe.cli import stripe_app
from billfold.subscriptions.cli import reconcile
from billfold.wiring import wire


class _BillfoldTyper(typer.Typer):
    """The `billfold` command: a configuration or billfold error is one line on stderr and exit
    status 1, never a traceback."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        try:
            return super().__call__(*args, **kwargs)
        except BillfoldError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            sys.exit(1)


app = _BillfoldTyper(
    help="billfold: self-hosted billing for SaaS products on Stripe.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(audit_app, name="audit")
app.add_typer(ledger_app, name="ledger")
# The sandbox (its package imports Starlette) is imported only when its command runs: the
# other commands start without the web stack.
sandbox_app = typer.Typer(help="The Stripe sandbox (a stateful Stripe API).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,  # --help goes to the sandbox's own command, which has the options
)
def sandbox_serve(ctx: typer.Context) -> None:
    """Serve the Stripe sandbox; point any Stripe SDK's API base at it (--help for options)."""
    from billfold_sandbox.cli import sandbox_app as the_sandbox

    typer.main.get_command(the_sandbox).main(["serve", *ctx.args], prog_name="billfold sandbox")


app.add_typer(catalog_app, name="catalog")
stripe_app.command("reconcile")(reconcile)
app.add_typer(stripe_app, name="stripe")
app.add_typer(jobs_app, name="jobs")
app.add_typer(credits_app, name="credits")
stripe_cli.CONTAINER_WIRING.append(wire)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one sentence stays one line


def fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default 8000)."),
    workers: int = typer.Option(
        1,
        min=1,
        help="Processes serving requests (uvicorn's workers); about one per core.",
    ),
    reload: bool = typer.Option(False, help="Reload on code changes (development)."),
) -> None:
    """Start the HTTP API (migrating the database first)."""
    import os

    from billfold.app import create_app
    from billfold.db.migrate import upgrade_unless_current
    from billfold.observability import configure_logging

    settings = get_settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    try:
        settings.check()
        upgrade_unless_current(settings.effective_database_url)
        # With workers, each process builds its own app from the environment (uvicorn imports
        # the factory in every worker); the settings were checked above.
        application = create_app(settings) if workers == 1 else None
    except BillfoldError as exc:
        fail(exc.message)
        return
    except OSError as exc:
        fail(f"cannot start: {exc}")
        return
    except SQLAlchemyError as exc:
        fail(f"cannot open the database ({type(exc).__name__}): {str(exc).splitlines()[0]}")
        return
    database = settings.effective_database_url.split("@")[-1]
    try:  # where the CLI's `billfold stripe sync|reconcile` find this server's sandbox
        settings.server_url_file.parent.mkdir(parents=True, exist_ok=True)
        settings.server_url_file.write_text(settings.base_url + "\n")
    except OSError:
        pass
    console.print(f"billfold listening on http://{settings.host}:{settings.port}")
    console.print(f"  database: {database}")
    console.print(f"  data dir: {settings.data_dir} (BILLFOLD_DATA_DIR)")
    if workers > 1:
        if settings.sandbox_mode:
            # Each worker would hold a sandbox of its own on one state file: one Stripe world
            # must live in one process.
            console.print(
                "[yellow]  the embedded sandbox runs in one process: serving with 1 worker "
                "(set STRIPE_SECRET_KEY, or run `billfold sandbox serve` and point "
                "BILLFOLD_STRIPE_API_BASE at it, to serve with several)[/yellow]"
            )
            workers = 1
            application = create_app(settings)
        else:
            console.print(f"  workers: {workers}")
    configure_logging(settings.log_level)  # the app logs its mode line when it starts
    if application is not None:
        import uvicorn

        # No route speaks WebSocket: ws="none" spares every start the websockets package.
        uvicorn.run(
            application, host=settings.host, port=settings.port, log_level="warning", ws="none"
        )
        return
    # The workers read their settings from the environment: pass the command line's on. This
    # process becomes uvicorn's supervisor (billfold.supervisor), which imports uvicorn only:
    # everything this one loaded would otherwise stay in memory beside the workers.
    os.environ["BILLFOLD_HOST"] = settings.host
    os.environ["BILLFOLD_PORT"] = str(settings.port)
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = [sys.executable, "-m", "billfold.supervisor", settings.host, str(settings.port)]
    os.execv(sys.executable, [*supervisor, str(workers)])  # noqa: S606 (this interpreter)


@app.command()
def worker(
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        min=1,
        max=256,
        help="Jobs run at once (BILLFOLD_WORKER_CONCURRENCY).",
    ),
) -> None:
    """Run jobs until SIGTERM or SIGINT (then finish or release the jobs in flight). Any number
    of workers, on any number of machines, may share one PostgreSQL database."""
    import signal

    from billfold.clock import SystemClock
    from billfold.container import Container
    from billfold.db.engine import Database
    from billfold.db.migrate import is_current
    from billfold.jobs import Worker
    from billfold.observability import configure_logging
    from billfold.stripe.gateway import StripeClientGateway

    settings = get_settings()
    if concurrency:
        settings.worker_concurrency = concurrency

    async def main() -> None:
        settings.check()
        database = Database(settings.effective_database_url)
        try:
            if not await is_current(database.engine):
                fail("the database is not at the newest migration; run `billfold db upgrade`")
            container = wire(
                Container(
                    settings=settings,
                    db=database,
                    clock=SystemClock(),
                    stripe_gateway=StripeClientGateway(settings),
                )
            )
            assert container.jobs is not None
            running = Worker.from_settings(container, container.jobs)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, running.stop)
            err_console.print(
                f"billfold worker {running.runner.worker_id}: "
                f"{len(container.jobs.kinds)} job kinds, concurrency {running.concurrency}"
            )
            await running.run()
        finally:
            await database.dispose()

    configure_logging(settings.log_level)
    try:
        asyncio.run(main())
    except BillfoldError as exc:
        fail(exc.message)
    except SQLAlchemyError as exc:
        fail(f"cannot open the database ({type(exc).__name__}): {str(exc).splitlines()[0]}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Run every migration not yet applied."""
    from billfold.db.migrate import upgrade

    url = get_settings().effective_database_url
    upgrade(url)
    console.print("database is at the newest revision")


@db_app.command("current")
def db_current() -> None:
    """Show the revisions the database is at."""
    from billfold.db.migrate import current_revisions, script_heads

    url = get_settings().effective_database_url
    current = asyncio.run(current_revisions(url))
    heads = script_heads()
    for rev in sorted(current):
        console.print(rev)
    if current != heads:
        console.print(f"[yellow]behind: newest is {', '.join(sorted(heads))}[/yellow]")
        raise typer.Exit(code=1)


@app.command()
def token(
    subject: str = typer.Argument(..., help="The user id (the token's sub)."),
    org: str | None = typer.Option(None, "--org", help="Organization id."),
    role: str = typer.Option("member", "--role", help="admin or member (with --org)."),
    shop: str | None = typer.Option(None, "--shop", help="Shop domain."),
    ttl: str = typer.Option("1h", "--ttl", help="Lifetime: 90s, 15m, 1h, 7d."),
) -> None:
    """Print a bearer token signed with the configured key."""
    from billfold.auth.tokens import issue_token, parse_ttl

    if role not in ("admin", "member"):
        fail("--role must be admin or member")
    try:
        printed = issue_token(
            get_settings(), subject, org_id=org, role=role, shop=shop, ttl=parse_ttl(ttl)
        )
    except BillfoldError as exc:
        fail(exc.message)
        return
    sys.stdout.write(printed + "\n")


if __name__ == "__main__":
    app()
