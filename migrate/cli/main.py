"""The `migrate` command: each subcommand opens the project, calls one library function, renders.

Errors are caught in one place (`main`) and mapped to the exit codes of DESIGN.md: 0 success,
1 verification failed, 2 bad usage/config/mapping, 3 source/target unreachable or another runtime
failure. A traceback is shown only with --debug.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from migrate import __version__
from migrate.errors import EXIT_RUNTIME, EXIT_VERIFY, MigrateError, mask_secrets
from migrate.project import Project

from .render import Renderer

if TYPE_CHECKING:
    from migrate.reconcile import ServiceResult


class _State:
    def __init__(self, config: Path | None, debug: bool) -> None:
        self.config = config
        self.debug = debug


@contextmanager
def _project(ctx: click.Context, *, read_only: bool = False) -> Iterator[Project]:
    state: _State = ctx.find_object(_State)  # type: ignore[assignment]
    project = Project.load(state.config, read_only=read_only)
    try:
        yield project
    finally:
        project.close()


class _Group(click.Group):
    """Maps every failure to its documented exit code, for the console script and CliRunner."""

    def invoke(self, ctx: click.Context) -> object:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except MigrateError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc.render()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: re-run the same command to resume", err=True)
            ctx.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            click.echo(
                f"error: unexpected failure: {mask_secrets(f'{type(exc).__name__}: {exc}')}",
                err=True,
            )
            click.echo("hint: re-run with --debug for a traceback, and report it", err=True)
            ctx.exit(EXIT_RUNTIME)
        return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    envvar="MIGRATE_CONFIG",
    help="The project's migrate.toml (default: ./migrate.toml; env MIGRATE_CONFIG).",
)
@click.option("--debug", is_flag=True, help="Show a traceback when a command fails.")
@click.version_option(__version__, prog_name="migrate")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool) -> None:
    """Move a legacy relational database into Riak KV, service by service, provably.

    Exit codes: 0 success; 1 verification failed (mismatch, rejects over the limit, gate refused);
    2 bad usage, config or mapping; 3 source or target unreachable, or another runtime failure.
    """
    ctx.obj = _State(config, debug)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--patients",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="How many patients the sample estate holds.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed: the same seed builds the same database.",
)
def demo(directory: Path, patients: int, seed: int) -> None:
    """Create a sample Oracle-shaped legacy database and a ready project in DIRECTORY.

    DIRECTORY gets legacy.db (SQLite with Oracle type names), migrate.toml (embedded target, SQLite
    ledger) and one mapping file per sample service (ods, pds, scr, eps).
    """
    from migrate.demo import create_demo

    renderer = Renderer()
    summary = create_demo(directory, patients=patients, seed=seed, progress=renderer.step)
    renderer.demo_summary(summary)


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate migrate.toml and every mapping against the source schema.

    Every problem is reported at once, with file:line, the field at fault and a hint; exit 2 if any.
    """
    from migrate.check import check_project

    with _project(ctx) as project:
        results = check_project(project)
    Renderer().check_results(results)


@cli.command()
@click.argument("services", nargs=-1)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes that read (where the source shares its snapshot), stage and transform "
    "chunks and prepare their writes (default: [run] workers, else one per core).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start a new run with a new source snapshot instead of resuming the last one.",
)
@click.pass_context
def run(ctx: click.Context, services: tuple[str, ...], workers: int | None, fresh: bool) -> None:
    """Extract, transform and load SERVICES (default: all, in cutover order).

    Services load one after another; the workers read and build the next one's first chunks
    while the one before finishes its loads. Interrupted or killed, a re-run resumes where the
    ledger says the last one stopped and never writes a document twice. A run whose rejected rows
    pass [run] max_rejects stops with exit 1; the rejects file it names says which rows and why.
    A target that stops serving (every host of a Riak URL down, stopping or starting) pauses the
    run with exit 3, saying so; with [target] patience it waits that long, then carries on.
    """
    from migrate.pipeline import run_services

    renderer = Renderer()
    with _project(ctx) as project, renderer.progress() as on_event:
        reports = run_services(project, services, workers=workers, fresh=fresh, on_event=on_event)
    renderer.run_reports(reports)
    different = [r for r in reports if r.verification is not None and not r.verification.equal]
    for r in different:
        assert r.verification is not None
        counts = r.verification.counts()
        keys = counts["missing"] + counts["extra"] + counts["changed"]
        click.echo(
            f"{r.service}: the reconciliation of what this run loaded found {keys} keys that "
            f"differ (differences: {r.verification.differences_path}); next: "
            f"`migrate reconcile {r.service}` to see them, "
            f"`migrate repair {r.service}` to fix them",
            err=True,
        )
    if different:
        ctx.exit(EXIT_VERIFY)


@cli.command()
@click.argument("service")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to FILE (owner-only) instead of standard output.",
)
@click.pass_context
def dump(ctx: click.Context, service: str, output: Path | None) -> None:
    """Write the target's documents of SERVICE, one JSON object per line.

    Each line: {"bucket_type","bucket","key","indexes":{name:[values]},"value":{...}}, in bucket and
    key order. Documents hold personal data: a file given with --output is created owner-only.
    """
    from migrate.dump import dump_service
    from migrate.files import open_private

    with _project(ctx) as project:
        config = project.config.service(service)
        if output is None:
            dump_service(project, config, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with open_private(output) as handle:
            count = dump_service(project, config, handle)
    click.echo(f"{service}: {count} documents written to {output}", err=True)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts.",
)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show every service's phase, chunks, documents, rejects and the next safe step."""
    from migrate.status import project_status

    with _project(ctx) as project:
        statuses = project_status(project)
    if fmt == "json":
        click.echo(json.dumps([s.as_json() for s in statuses], indent=2))
    else:
        Renderer().status_table(statuses)


@cli.command()
@click.argument("services", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Write nothing anywhere (what CI runs).")
@click.option(
    "--against",
    type=click.Choice(["source", "staging"]),
    default="source",
    show_default=True,
    help="Expected documents from the source as it is now, or from what the last run staged.",
)
@click.option("--sample", default=None, help="Only keys in a deterministic sample, e.g. 1%.")
@click.option("--deep", is_flag=True, help="Also read every body back and check its checksum.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes that read (where the source shares its snapshot) and build chunks "
    "(default: [run] workers, else one per core).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "junit"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for scripts, JUnit XML for CI.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the report to FILE (owner-only) instead of standard output.",
)
@click.option(
    "--show-values",
    is_flag=True,
    help="Include expected and actual values of changed documents (personal data!).",
)
@click.pass_context
def reconcile(  # noqa: PLR0917 (click passes every option by position)
    ctx: click.Context,
    services: tuple[str, ...],
    dry_run: bool,
    against: str,
    sample: str | None,
    deep: bool,
    workers: int | None,
    fmt: str,
    output: Path | None,
    show_values: bool,
) -> None:
    """Prove that the target holds exactly what the source says, per document.

    Names every missing key (in the source, not the target), extra key (in the target, not the
    source) and changed document. Exit 0 when everything matches, 1 when anything differs. Without
    --dry-run the result is recorded in the ledger for `migrate repair` and the cutover gates.
    """
    from migrate.reconcile import Against, Options, parse_sample, reconcile_services

    options = Options(
        dry_run=dry_run,
        against=Against(against),
        sample=parse_sample(sample) if sample is not None else None,
        deep=deep,
        workers=workers or 0,
        show_values=show_values,
    )
    with _project(ctx, read_only=dry_run) as project:
        results = reconcile_services(project, services, options)
    _emit_report(results, fmt, output, show_values)
    if not all(r.equal for r in results):
        ctx.exit(EXIT_VERIFY)


def _emit_report(results: list[ServiceResult], fmt: str, output: Path | None, show: bool) -> None:
    from migrate.files import open_private
    from migrate.reconcile.report import render_json, render_junit

    if fmt == "table":
        if output is None:
            Renderer().reconcile_table(results, show_values=show)
            return
        text = Renderer.reconcile_text(results, show_values=show)
    elif fmt == "json":
        text = render_json(results, show_values=show) + "\n"
    else:
        text = render_junit(results, show_values=show)
    if output is None:
        click.echo(text, nl=False)
        return
    with open_private(output) as handle:
        handle.write(text.encode("utf-8"))
    click.echo(f"report written to {output}", err=True)


@cli.command()
@click.argument("service")
@click.pass_context
def repair(ctx: click.Context, service: str) -> None:
    """Re-load the keys the last recorded reconciliation of SERVICE found missing or changed,
    delete its extra keys, then reconcile those chunks again. Exit 0 when now equal."""
    from migrate.reconcile import repair_service

    with _project(ctx) as project:
        report = repair_service(project, service)
    Renderer().repair_report(report)
    if report.check is not None and not report.check.equal:
        ctx.exit(EXIT_VERIFY)


def main() -> None:
    """Entry point of the `migrate` console script."""
    cli.main(prog_name="migrate")
