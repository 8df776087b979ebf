"""The `migrate` command: each subcommand opens the project, calls one library function, renders.

Errors are caught in one place (`main`) and mapped to the documented exit codes (README): 0 success,
1 verification failed, 2 bad usage/config/mapping, 3 source/target unreachable or another runtime
failure. A traceback is shown only with --debug.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from migrate import __version__
from migrate.errors import EXIT_RUNTIME, EXIT_VERIFY, MigrateError, mask_secrets
from migrate.project import Project

from .outputs import ReaderGone, guarded_streams, output_file, until_reader_leaves
from .render import Renderer

if TYPE_CHECKING:
    from migrate.reconcile import ServiceResult


_ARGV: list[str] = []  # this command's arguments, as `_Group.main` was given them


def command_line() -> str:
    """This command as typed (secrets masked), for the ledger's leases and audit log."""
    return mask_secrets(" ".join(["migrate", *_ARGV]))


class _State:
    def __init__(
        self, config: Path | None, debug: bool, *, quiet: bool = False, no_color: bool = False
    ) -> None:
        self.config = config
        self.debug = debug
        self.quiet = quiet
        self.no_color = no_color


def _renderer(ctx: click.Context) -> Renderer:
    state: _State | None = ctx.find_object(_State)
    if state is None:
        return Renderer()
    return Renderer(quiet=state.quiet, no_color=state.no_color)


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

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Every command's outputs behave (`outputs`): quiet when the reader leaves, exit 3 with
        the path when they cannot be written. The arguments are kept for `command_line`."""
        given = args[0] if args else kwargs.get("args")
        _ARGV[:] = list(given) if given is not None else sys.argv[1:]
        with guarded_streams():
            return super().main(*args, **kwargs)

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
        except Terminated:
            click.echo("terminated (SIGTERM): re-run the same command to resume", err=True)
            ctx.exit(143)
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
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="For cron: no progress and no summary of work that succeeded; errors, warnings and "
    "differences are still shown, and data asked for (dump, status, JSON) still written.",
)
@click.option("--no-color", is_flag=True, help="No colour in any output (as NO_COLOR=1 does).")
@click.version_option(__version__, prog_name="migrate")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool, quiet: bool, no_color: bool) -> None:
    """Move a legacy relational database into Riak KV, service by service, provably.

    Exit codes: 0 success; 1 verification failed (mismatch, rejects over the limit, gate refused);
    2 bad usage, config or mapping; 3 source or target unreachable, or another runtime failure.
    A reader that closes the output early (`| head`) is not an error: the exit code is the work's.
    """
    ctx.obj = _State(config, debug, quiet=quiet, no_color=no_color)


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
@click.option(
    "--source",
    metavar="URL",
    help="Load the estate into this empty PostgreSQL or MariaDB/MySQL database (no password "
    "in the URL) instead of a SQLite file, in that engine's own types.",
)
@click.option(
    "--password-env",
    metavar="NAME",
    help="The environment variable holding the --source password (written to migrate.toml).",
)
@click.pass_context
def demo(  # noqa: PLR0917 (click passes every option by position)
    ctx: click.Context,
    directory: Path,
    patients: int,
    seed: int,
    source: str | None,
    password_env: str | None,
) -> None:
    """Create a sample Oracle-shaped legacy database and a ready project in DIRECTORY.

    DIRECTORY gets legacy.db (SQLite with Oracle type names), migrate.toml (embedded target, SQLite
    ledger) and one mapping file per sample service (ods, pds, scr, eps). With --source the estate
    goes into that server instead, and migrate.toml reads from it.
    """
    from migrate.demo import create_demo

    renderer = _renderer(ctx)
    summary = create_demo(
        directory,
        patients=patients,
        seed=seed,
        source=source,
        password_env=password_env,
        progress=renderer.step,
    )
    renderer.demo_summary(summary)


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate migrate.toml and every mapping against the source schema.

    Refuses everything `run` would refuse for a reason in the project's files: unknown tables or
    columns, bad target or state URLs, a folder that cannot be written, a `where` the source
    rejects. Every problem is reported at once, with file:line, the field at fault and a hint;
    exit 2 if any. Warnings (exit 0): columns nothing reads, joins without an index (with the
    CREATE INDEX to run), documents that could come near max_document_bytes, and one table keyed
    two ways by two services.
    """
    from migrate.check import check_project

    with _project(ctx) as project:
        report = check_project(project)
    _renderer(ctx).check_results(report)


@cli.command()
@click.argument("service")
@click.option("--root", "root", required=True, help="The root table: one document per row.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the mapping (default: mappings/SERVICE.yaml in the project).",
)
@click.pass_context
def scaffold(ctx: click.Context, service: str, root: str, output: Path | None) -> None:
    """Write a first mapping of SERVICE from the source schema, rooted at --root TABLE.

    Follows foreign keys: tables referring to the root (at any depth) become embeds ordered by
    their primary key, other foreign keys lookups; the root's foreign-key and date columns
    become secondary indexes; its primary key the key template. Each guess has a comment saying
    why. Never overwrites a file; adds [services.SERVICE] to migrate.toml.
    """
    from migrate.scaffold import scaffold_service

    with _project(ctx) as project:
        result = scaffold_service(project, service, root, output=output)
    _renderer(ctx).scaffold_result(result)


@cli.command()
@click.argument("service")
@click.argument("key", required=False)
@click.option(
    "--sample",
    "count",
    type=click.IntRange(min=1),
    default=None,
    help="N documents of each document type, the same ones every time (by key hash).",
)
@click.option("--type", "doc_type", default=None, help="Only this document type of SERVICE.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pretty", "json"]),
    default=None,
    help="pretty for people, or one JSON object per line (default: pretty on a terminal, JSON "
    "when piped).",
)
@click.pass_context
def preview(  # noqa: PLR0917 (click passes every option by position)
    ctx: click.Context,
    service: str,
    key: str | None,
    count: int | None,
    doc_type: str | None,
    fmt: str | None,
) -> None:
    """Build documents of SERVICE straight from the source, as `run` would, and show them.

    With KEY, the document with that key; with --sample N (the default: 1), N documents of each
    document type. Each comes with its secondary indexes, its size in bytes and the rejects its
    row would raise. Writes nothing anywhere: no ledger, no staging, no target.
    """
    from migrate.errors import UsageError
    from migrate.preview import json_line, preview_key, preview_sample

    if key is not None and count is not None:
        raise UsageError("give a KEY or --sample N, not both", hint="e.g. migrate preview pds 42")
    with _project(ctx, read_only=True) as project:
        if key is not None:
            previews = preview_key(project, service, key, doc_type=doc_type)
        else:
            previews = preview_sample(project, service, count or 1, doc_type=doc_type)
    renderer = _renderer(ctx)
    if (fmt or ("pretty" if renderer.out.is_terminal else "json")) == "pretty":
        renderer.previews(previews)
        return
    out = until_reader_leaves(sys.stdout.buffer)
    try:
        for item in previews:
            out.write(json_line(item) + b"\n")
        out.flush()
    except ReaderGone:
        pass


@cli.command()
@click.argument("services", nargs=-1)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes that read (where the source shares its snapshot), stage and transform "
    "chunks and prepare their writes (default: [run] workers, else one per core). With a Dask "
    "executor the cluster's workers do, and load them too.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Start a new run with a new source snapshot instead of resuming the last one.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts (schema in docs/run-report.md).",
)
@click.pass_context
def run(
    ctx: click.Context, services: tuple[str, ...], workers: int | None, fresh: bool, fmt: str
) -> None:
    """Extract, transform and load SERVICES (default: all, in cutover order).

    Services load one after another; the workers read and build the next one's first chunks
    while the one before finishes its loads. Interrupted or killed, a re-run resumes where the
    ledger says the last one stopped and never writes a document twice. A run whose rejected rows
    pass [run] max_rejects stops with exit 1; the rejects file it names says which rows and why.
    A target that stops serving (every host of a Riak URL down, stopping or starting) pauses the
    run with exit 3, saying so; with [target] patience it waits that long, then carries on.
    With [run] executor = "dask://host:port" the chunks run as tasks on that Dask cluster, each
    worker loading its own; a worker killed mid-chunk has it run again elsewhere; a scheduler
    that cannot be reached, or is lost, stops the run with exit 3, and a re-run resumes.
    """
    from migrate.pipeline import run_services

    renderer = _renderer(ctx)
    with _project(ctx) as project, renderer.progress() as on_event:
        reports = run_services(
            project,
            services,
            workers=workers,
            fresh=fresh,
            on_event=on_event,
            command=command_line(),
        )
    if fmt == "json":
        from migrate.run_report import render_json

        click.echo(render_json(reports))
    else:
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

    with _project(ctx) as project:
        config = project.config.service(service)
        if output is None:
            out = until_reader_leaves(sys.stdout.buffer)
            try:
                dump_service(project, config, out)
                out.flush()
            except ReaderGone:  # `| head`: the reader has what it wanted
                pass
            return
        with output_file(output) as handle:
            count = dump_service(project, config, handle)
    _renderer(ctx).note(f"{service}: {count} documents written to {output}")


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
        _renderer(ctx).status_table(statuses)


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
    "(default: [run] workers, else one per core). With a Dask executor the cluster's workers "
    "do.",
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
@click.option(
    "--accept-rejects",
    is_flag=True,
    help="Rejected source rows do not fail the reconciliation; they are still listed, and the "
    "acceptance is recorded (who, when, how many).",
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
    accept_rejects: bool,
) -> None:
    """Prove that the target holds exactly what the source says, per document.

    Names every missing key (in the source, not the target), extra key (in the target, not the
    source), changed document, and rejected source row (a row that makes no document: a bad
    value, a code with no translation, a key other rows render too...). Exit 0 when everything
    matches, 1 when anything differs or a row is rejected (unless --accept-rejects). Without
    --dry-run the result is recorded in the ledger for `migrate repair` and the cutover gates.
    With [run] executor = "dask://host:port" each chunk's expected documents are built (and,
    where the source shares its snapshot, read) by that Dask cluster's workers; the target's
    side is read and compared here.
    """
    from migrate.reconcile import Against, Options, parse_sample, reconcile_services

    options = Options(
        dry_run=dry_run,
        against=Against(against),
        sample=parse_sample(sample) if sample is not None else None,
        deep=deep,
        workers=workers or 0,
        show_values=show_values,
        accept_rejects=accept_rejects,
    )
    renderer = _renderer(ctx)
    with _project(ctx, read_only=dry_run) as project, renderer.progress() as on_event:
        results = reconcile_services(project, services, options, on_event=on_event)
    _emit_report(renderer, results, fmt, output, show_values)
    if not all(r.equal for r in results):
        ctx.exit(EXIT_VERIFY)


def _emit_report(
    renderer: Renderer, results: list[ServiceResult], fmt: str, output: Path | None, show: bool
) -> None:
    from migrate.reconcile.report import render_json, render_junit

    if fmt == "table":
        if output is None:
            renderer.reconcile_table(results, show_values=show)
            return
        text = Renderer.reconcile_text(results, show_values=show)
    elif fmt == "json":
        text = render_json(results, show_values=show) + "\n"
    else:
        text = render_junit(results, show_values=show)
    if output is None:
        click.echo(text, nl=False)
        return
    with output_file(output) as handle:
        handle.write(text.encode("utf-8"))
    renderer.note(f"report written to {output}")


@cli.command()
@click.argument("service")
@click.pass_context
def repair(ctx: click.Context, service: str) -> None:
    """Re-load the keys the last recorded reconciliation of SERVICE found missing or changed,
    delete its extra keys, then reconcile those chunks again. Exit 0 when now equal."""
    from migrate.reconcile import repair_service

    renderer = _renderer(ctx)
    with _project(ctx) as project, renderer.progress() as on_event:
        report = repair_service(project, service, on_event=on_event, command=command_line())
    renderer.repair_report(report)
    if report.check is not None and not report.check.equal:
        ctx.exit(EXIT_VERIFY)


class Terminated(BaseException):
    """SIGTERM (what service managers send) arrived: stop as on Ctrl-C, saying so."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def main() -> None:
    """Entry point of the `migrate` console script. Interrupted (Ctrl-C, SIGTERM), it ends at once
    once the command has cleaned up (run recorded as stopped, leases released): the interpreter's
    own exit would wait for the worker processes' chunks under way, and the workers end with the
    command instead (`migrate.processes.start_worker`)."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(prog_name="migrate")
    except SystemExit as exc:
        if exc.code in (130, 143):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(exc.code))
        raise


from migrate.cli import cutover as _cutover  # noqa: E402, F401 (registers its commands on `cli`)

__all__ = ["cli", "main"]
