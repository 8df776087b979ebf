"""The cutover half of the CLI: change capture, delta, the cutover steps, the audit log and the
runbook. Each command opens the project, calls one library function, renders its result."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from migrate.cli.main import _project, _renderer, cli, command_line

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts.",
)
_OPERATOR = click.option(
    "--operator",
    default=None,
    help="Who is acting, for the audit log (default: $MIGRATE_ACTOR, else user@host).",
)


def _as(operator: str | None) -> None:
    if operator:
        os.environ["MIGRATE_ACTOR"] = operator


@cli.group()
def capture() -> None:
    """Change capture for every table a service's mapping reads (before its bulk run).

    `triggers` (set [services.NAME] capture = "triggers"): a change-log table and insert, update
    and delete triggers in the source (SQLite, PostgreSQL; Oracle's statements are built to its
    rules, untried against a live server). Install it before `migrate run`: the run records where
    the log stands at its snapshot, and the first `migrate delta` starts there.

    `watermark` (capture = "watermark", watermark = "COLUMN" or { TABLE = "COLUMN", ... }): each
    table's last-modified column, on any engine; nothing is installed in the source. Each delta
    compares every document's rows (keys and last-modified values) with what it was built from.
    """


@capture.command("install")
@click.argument("service")
@_OPERATOR
@click.pass_context
def capture_install(ctx: click.Context, service: str, operator: str | None) -> None:
    """Create SERVICE's change log and triggers in the source (nothing, when already there);
    for watermark capture, check each table's last-modified column and record them."""
    from migrate.capture import install

    _as(operator)
    with _project(ctx) as project:
        found = install(project, service, command=command_line())
    _renderer(ctx).note(
        f"{service}: change capture installed on {len(found.tables)} table(s): "
        + ", ".join(found.tables)
    )


@capture.command("status")
@click.argument("service")
@_FORMAT
@click.pass_context
def capture_status(ctx: click.Context, service: str, fmt: str) -> None:
    """What capture records for SERVICE, changes pending for its next delta, and their age."""
    from migrate.capture import status

    with _project(ctx) as project:
        found = status(project, service)
    if fmt == "json":
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    lag = found.lag_seconds()
    out = _renderer(ctx).out
    out.print(f"{service}: capture {found.mode or 'not configured'}", markup=False)
    out.print(
        f"  installed: {'yes' if found.installed else 'no'}"
        + ("" if found.current or not found.installed else " (out of date: reinstall)"),
        markup=False,
    )
    out.print(f"  tables: {', '.join(found.tables) or '-'}", markup=False)
    out.print(f"  position: {found.position or '- (no run under capture yet)'}", markup=False)
    pending = "-" if found.pending is None else f"{found.pending:,}"
    age = "" if lag is None else f", the oldest {lag:.1f} s old"
    out.print(f"  pending changes: {pending}{age}", markup=False)


@capture.command("uninstall")
@click.argument("service")
@_OPERATOR
@click.pass_context
def capture_uninstall(ctx: click.Context, service: str, operator: str | None) -> None:
    """Remove every object capture made for SERVICE (after the weekend)."""
    from migrate.capture import uninstall

    _as(operator)
    with _project(ctx) as project:
        uninstall(project, service, command=command_line())
    _renderer(ctx).note(f"{service}: change capture removed")


@cli.command()
@click.argument("services", nargs=-1)
@_FORMAT
@_OPERATOR
@click.pass_context
def delta(ctx: click.Context, services: tuple[str, ...], fmt: str, operator: str | None) -> None:
    """Apply every source change logged since the last run or delta (default: every service
    with capture). Repeatable, resumable after a kill, idempotent; with nothing to do it returns
    at once, so it can be polled (watermark capture: after comparing every document's rows).
    Refused once a service is frozen (use `cutover sync`). Runs on this host even with a Dask
    [run] executor: its batches are applied one after another, in order, and it says so."""
    from migrate.cutover import run_deltas

    _as(operator)
    renderer = _renderer(ctx)
    with _project(ctx) as project, renderer.progress() as on_event:
        reports = run_deltas(project, services, command=command_line(), on_event=on_event)
    if fmt == "json":
        click.echo(json.dumps([r.as_json() for r in reports], indent=2))
        return
    for r in reports:
        if r.delta_id is None:
            where = (
                "every document's rows compared"
                if r.position.startswith("wm:")
                else f"position {r.position}"
            )
            renderer.note(f"{r.service}: nothing to apply ({where})")
        else:
            renderer.note(
                f"{r.service}: delta {r.delta_id}{' (resumed)' if r.resumed else ''}: "
                f"{r.changes:,} changes, {r.roots:,} documents rebuilt, {r.written:,} written, "
                f"{r.deleted:,} deleted, {r.rejects:,} rejected, {r.seconds:.2f} s"
            )


@cli.command()
@click.argument("service")
@click.argument("step", type=click.Choice(["freeze", "sync", "verify", "switch", "rollback"]))
@click.option(
    "--out-of-order",
    is_flag=True,
    help="switch: before services earlier in [cutover] order (recorded in the audit log).",
)
@click.option(
    "--accept-rejects",
    is_flag=True,
    help="verify: rejected source rows do not fail the verification (recorded).",
)
@_OPERATOR
@click.pass_context
def cutover(  # noqa: PLR0917 (click passes every option by position)
    ctx: click.Context,
    service: str,
    step: str,
    out_of_order: bool,
    accept_rejects: bool,
    operator: str | None,
) -> None:
    """One cutover step of SERVICE; a gate that refuses exits 1 saying what to run.

    freeze: the operator declares the source read-only for SERVICE. sync: the final delta, and
    proof that no change is left. verify: a full reconciliation against the source, recorded as
    evidence. switch: the target becomes the system of record (needs a passing verify after the
    freeze, no change since, and the services before it in [cutover] order switched). rollback:
    before the switch, back to syncing.
    """
    from migrate.cutover import Cutover, next_step

    _as(operator)
    options: dict[str, Any] = {}
    if step == "switch":
        options["out_of_order"] = out_of_order
    if step == "verify":
        options["accept_rejects"] = accept_rejects
    with _project(ctx) as project:
        result = Cutover(project, service, command=command_line()).step(step, **options)
    before = result.before.value if result.before else "-"
    _renderer(ctx).note(
        f"{service}: {step} done ({before} -> {result.after.value}, {result.seconds:.2f} s); "
        f"next: {next_step(result.after, service)}"
    )


@cli.command()
@click.argument("service", required=False)
@_FORMAT
@click.pass_context
def audit(ctx: click.Context, service: str | None, fmt: str) -> None:
    """Every recorded transition and refusal: who, when, the command, the evidence."""
    with _project(ctx) as project:
        if service is not None:
            project.config.service(service)
        rows = project.ledger.audit_log(service)
    if fmt == "json":
        click.echo(json.dumps([_audit_json(row) for row in rows], indent=2, ensure_ascii=False))
        return
    table = Table(title="migrate audit", title_justify="left")
    for column in ("at", "service", "actor", "action", "detail"):
        table.add_column(column)
    for row in rows:
        detail = row["detail"]
        shown = ", ".join(f"{k}={_short(v)}" for k, v in detail.items() if k != "evidence")
        table.add_row(
            f"{row['at']:%Y-%m-%d %H:%M:%S}Z",
            escape(row["service"] or "-"),
            escape(row["actor"]),
            escape(row["action"]),
            escape(shown),
        )
    _renderer(ctx).out.print(table)


@cli.command()
@click.argument("service")
@_FORMAT
@click.pass_context
def runbook(ctx: click.Context, service: str, fmt: str) -> None:
    """SERVICE's runbook steps, done or pending from the ledger, with when and how long each
    took (a rehearsal's timings are the weekend's timed plan)."""
    from migrate.runbook import runbook as steps_of

    with _project(ctx) as project:
        steps, following = steps_of(project, service)
    if fmt == "json":
        document = {"service": service, "steps": [s.as_json() for s in steps], "next": following}
        click.echo(json.dumps(document, indent=2))
        return
    table = Table(title=f"migrate runbook {service}", title_justify="left")
    for column in ("step", "command", "purpose", "status", "last done", "took"):
        table.add_column(column)
    for s in steps:
        table.add_row(
            str(s.number),
            escape(s.command),
            escape(s.purpose),
            "done" + (f" x{s.times}" if s.times > 1 else "") if s.done else "pending",
            f"{s.at:%Y-%m-%d %H:%M:%S}Z" if s.at else "-",
            "-" if s.seconds is None else f"{s.seconds:.1f} s",
        )
    out = _renderer(ctx).out
    out.print(table)
    out.print(f"next: {following}", markup=False)


def _audit_json(row: dict[str, Any]) -> dict[str, Any]:
    at = row["at"]
    return {
        "id": row["id"],
        "at": at.astimezone(UTC).isoformat() if isinstance(at, datetime) else at,
        "actor": row["actor"],
        "service": row["service"],
        "action": row["action"],
        "detail": row["detail"],
    }


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
