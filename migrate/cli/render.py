"""Rendering for people: rich tables and a live progress display on a terminal, plain lines when
piped. Nothing here decides anything; it shows what the library reports.

`quiet` (for cron) drops progress and the summaries of work that succeeded; errors, warnings,
differences and the data a command was asked for are still shown. Colour follows `NO_COLOR`
(rich reads it) and `--no-color`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from migrate.events import (
    ChunkFinished,
    Event,
    EventSink,
    Note,
    ServiceFinished,
    ServiceStarted,
    ignore,
)

if TYPE_CHECKING:
    from migrate.check import CheckReport
    from migrate.demo import DemoSummary
    from migrate.pipeline import ServiceReport
    from migrate.preview import Preview
    from migrate.reconcile import RepairReport, ServiceResult
    from migrate.scaffold import ScaffoldResult
    from migrate.status import ServiceStatus


class Renderer:
    def __init__(self, *, quiet: bool = False, no_color: bool = False) -> None:
        self.quiet = quiet
        colour = True if no_color else None  # None: rich follows NO_COLOR
        # Piped output goes to logs and scripts: wide enough that tables never truncate run ids.
        self.out = Console(highlight=False, soft_wrap=True, no_color=colour)
        if not self.out.is_terminal:
            self.out = Console(highlight=False, soft_wrap=True, width=200, no_color=colour)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, no_color=colour)

    @property
    def live(self) -> bool:
        return self.err.is_terminal

    def step(self, text: str) -> None:
        if not self.quiet:
            self.err.print(text)

    def note(self, text: str) -> None:
        """A line for people about work that went well (dropped under --quiet)."""
        if not self.quiet:
            self.err.print(text, markup=False)

    # -- migrate run ---------------------------------------------------------------------------

    @contextmanager
    def progress(self) -> Iterator[EventSink]:
        """A live bar per service (chunks, documents, documents/s, ETA) on a terminal, plain
        lines when piped, nothing under --quiet."""
        if self.quiet:
            yield ignore
        elif self.live:
            with Progress(
                TextColumn("{task.description:<6}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks  {task.fields[docs]:>10,} docs  {task.fields[rate]:>8} docs/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.err,
                transient=False,
            ) as progress:
                yield _LiveProgress(progress, self.err).handle
        else:
            yield _PlainProgress(self.err).handle

    def run_reports(self, reports: Sequence[ServiceReport]) -> None:
        if self.quiet and all(r.verification is None or r.verification.equal for r in reports):
            return
        table = Table(title="migrate run", title_justify="left")
        for column in (
            "service",
            "run",
            "chunks",
            "documents",
            "written",
            "unchanged",
            "rejects",
            "seconds",
            "verified",
        ):
            table.add_column(
                column, justify="left" if column in ("service", "run", "verified") else "right"
            )
        for r in reports:
            table.add_row(
                r.service,
                r.run_id,
                str(r.chunks),
                f"{r.documents:,}",
                f"{r.written:,}",
                f"{r.unchanged:,}",
                f"{r.rejects:,}",
                f"{r.seconds:.1f}",
                _verified(r.verification),
            )
        self.out.print(table)
        for r in reports:
            if r.rejects_file is not None:
                self.out.print(f"{r.service}: {r.rejects} rejected rows listed in {r.rejects_file}")

    # -- migrate reconcile / repair ------------------------------------------------------------

    def reconcile_table(self, results: Sequence[ServiceResult], *, show_values: bool) -> None:
        if self.quiet and all(r.equal for r in results):
            return
        _reconcile_tables(self.out, results, show_values)

    @staticmethod
    def reconcile_text(results: Sequence[ServiceResult], *, show_values: bool) -> str:
        console = Console(highlight=False, soft_wrap=True, width=200, record=True, file=_Null())
        _reconcile_tables(console, results, show_values)
        return console.export_text()

    def repair_report(self, report: RepairReport) -> None:
        if self.quiet and (report.check is None or report.check.equal):
            return
        if report.check is None:
            self.out.print(f"{report.service}: the last reconciliation found nothing to repair")
            return
        self.out.print(
            f"{report.service}: repaired verification {report.verification_id}: "
            f"{report.written} written, {report.deleted} deleted"
        )
        _reconcile_tables(self.out, [report.check], False)

    # -- other commands ------------------------------------------------------------------------

    def check_results(self, report: CheckReport) -> None:
        for warning in report.warnings:
            self.err.print(f"warning: {warning.render()}", markup=False)
        if self.quiet:
            return
        for result in report.services:
            types = ", ".join(result.doc_types)
            noted = f", {result.warnings} warning(s)" if result.warnings else ""
            self.out.print(f"{result.service}: {result.mapping} ... ok ({types}){noted}")
        count = len(report.warnings)
        tail = f", {count} warning(s) above" if count else ""
        self.out.print(f"{len(report.services)} mapping(s) valid against the source schema{tail}")

    def scaffold_result(self, result: ScaffoldResult) -> None:
        if self.quiet:
            return
        self.out.print(f"{result.service}: wrote {result.mapping}", markup=False)
        self.out.print(f"  root {result.root}", markup=False)
        for what, names in (
            ("embeds", result.embeds),
            ("lookups", result.lookups),
            ("indexes", result.indexes),
        ):
            self.out.print(f"  {what}: {', '.join(names) or 'none'}", markup=False)
        self.out.print(f"  added [services.{result.service}] to {result.config}", markup=False)
        self.out.print(
            f"next: review the mapping's comments, then `migrate check` and "
            f"`migrate preview {result.service}`",
            markup=False,
        )

    def previews(self, previews: Sequence[Preview]) -> None:
        from migrate.preview import indent_json

        for item in previews:
            where = f"bucket {item.bucket} (type {item.bucket_type})"
            head = f"{item.service} · {item.doc_type} · {item.key or '(no key)'}  {where}"
            if item.document is None:
                self.out.print(f"[bold]{escape(head)}[/]  [red]REJECTED: not loaded[/]")
                for reject in item.rejects:
                    row = ", ".join(f"{k}={v}" for k, v in reject.source_key.items())
                    self.out.print(f"  {reject.field}: {reject.reason}  (row {row})", markup=False)
                self.out.print()
                continue
            self.out.print(f"[bold]{escape(head)}[/]  {item.size:,} bytes")
            if item.document.indexes:
                width = max(len(name) for name, _ in item.document.indexes)
                for name, values in item.document.indexes:
                    shown = ", ".join(str(v) for v in values)
                    self.out.print(f"  {name:<{width}}  {shown}", markup=False)
            else:
                self.out.print("  (no secondary index entries)")
            self.out.print(indent_json(item.document.value), markup=False, highlight=True)
            self.out.print()

    def status_table(self, statuses: Sequence[ServiceStatus]) -> None:
        table = Table(title="migrate status", title_justify="left")
        for column in (
            "service",
            "phase",
            "run",
            "chunks loaded",
            "documents",
            "rejects",
            "lag",
            "last verification",
            "next step",
        ):
            table.add_column(column)
        for s in statuses:
            loaded = s.chunks_by_state.get("loaded", 0)
            chunks = f"{loaded}/{s.chunks_total}" if s.run_id else "-"
            table.add_row(
                s.service,
                s.phase,
                s.run_id or "-",
                chunks,
                f"{s.documents:,}",
                f"{s.rejects:,}",
                s.lag_text(),
                s.verification_text(),
                s.next_step,
            )
        self.out.print(table)
        for s in statuses:
            if len(s.snapshots) > 1:
                self.out.print(
                    f"{s.service}: run {s.run_id} holds chunks read under {len(s.snapshots)} "
                    f"snapshots of the source (it resumed under a new one): "
                    f"{', '.join(s.snapshots)}"
                )

    def demo_summary(self, summary: DemoSummary) -> None:
        if self.quiet:
            return
        table = Table(title=f"demo estate in {summary.directory}", title_justify="left")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in summary.rows.items():
            table.add_row(name, f"{count:,}")
        self.out.print(table)
        self.out.print(f"next: cd {summary.directory} && migrate check && migrate run")


class _LiveProgress:
    def __init__(self, progress: Progress, console: Console) -> None:
        self.progress = progress
        self.console = console
        self.tasks: dict[str, TaskID] = {}
        self.docs: dict[str, int] = {}

    def handle(self, event: Event) -> None:
        if isinstance(event, ServiceStarted):
            self.docs[event.service] = 0
            label = event.service if event.action == "run" else f"{event.service} {event.action}"
            self.tasks[event.service] = self.progress.add_task(
                label,
                total=event.chunks_total,
                completed=event.chunks_done,
                docs=0,
                rate="-",
            )
        elif isinstance(event, ChunkFinished):
            task = self.tasks[event.service]
            self.docs[event.service] += event.documents
            elapsed = self.progress.tasks[task].elapsed or 0.0
            rate = f"{self.docs[event.service] / elapsed:,.0f}" if elapsed > 0 else "-"
            self.progress.update(task, advance=1, docs=self.docs[event.service], rate=rate)
        elif isinstance(event, Note):
            self.console.print(f"{event.service}: {event.text}")
        elif isinstance(event, ServiceFinished):
            self.progress.update(self.tasks[event.service], docs=event.documents)


class _PlainProgress:
    """One line per service start and end, and one per tenth of the chunks: quiet in logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.docs: dict[str, int] = {}

    def handle(self, event: Event) -> None:
        if isinstance(event, ServiceStarted):
            self.total[event.service] = event.chunks_total
            self.done[event.service] = event.chunks_done
            self.docs[event.service] = 0
            if event.action != "run":
                self.console.print(
                    f"{event.service}: {event.action} ... {event.chunks_total} chunks",
                    markup=False,
                )
                return
            verb = "resuming" if event.resumed else "starting"
            self.console.print(
                f"{event.service}: {verb} run {event.run_id} ... "
                f"{event.chunks_done}/{event.chunks_total} chunks already done"
            )
        elif isinstance(event, ChunkFinished):
            self.done[event.service] += 1
            self.docs[event.service] += event.documents
            done, total = self.done[event.service], self.total[event.service]
            step = max(1, total // 10)
            if done == total or done % step == 0:
                self.console.print(
                    f"{event.service}: {done}/{total} chunks, {self.docs[event.service]} documents"
                )
        elif isinstance(event, Note):
            self.console.print(f"{event.service}: {event.text}")
        elif isinstance(event, ServiceFinished):
            if event.action != "run":
                self.console.print(
                    f"{event.service}: {event.action} ... done: {event.documents} documents, "
                    f"{event.seconds:.1f}s",
                    markup=False,
                )
                return
            self.console.print(
                f"{event.service}: run {event.run_id} ... done: {event.documents} documents, "
                f"{event.rejects} rejects, {event.seconds:.1f}s"
            )


class _Null(io.StringIO):
    """Where a recording console prints when only its exported text is wanted."""


def _verified(result: ServiceResult | None) -> str:
    if result is None:
        return "-"
    counts = result.counts()
    if result.equal:
        return f"equal ({counts['expected']:,} documents)"
    kinds = ", ".join(f"{counts[k]} {k}" for k in ("missing", "extra", "changed"))
    return f"DIFFERENT: {kinds}"


def _reconcile_tables(
    console: Console, results: Sequence[ServiceResult], show_values: bool
) -> None:
    table = Table(title="migrate reconcile", title_justify="left")
    names = ["service", "document type", "outcome", "expected", "actual", "equal"]
    names += ["missing", "extra", "changed", "rejected", "chunks", "skipped equal", "seconds"]
    for name in names:
        table.add_column(name, justify="left" if name in names[:3] else "right")
    for result in results:
        for doc in result.doc_types:
            c = doc.counts()
            if not doc.equal:
                verdict = "DIFFERENT"
            elif c["rejected"]:
                verdict = "rejects accepted" if result.rejects_accepted else "REJECTED ROWS"
            else:
                verdict = "equal"
            table.add_row(
                result.service,
                doc.doc_type,
                verdict,
                *(f"{c[k]:,}" for k in ("expected", "actual", "equal", "missing")),
                *(f"{c[k]:,}" for k in ("extra", "changed", "rejected", "chunks_compared")),
                f"{c['chunks_skipped_equal']:,}",
                f"{result.seconds:.1f}",
            )
    console.print(table)
    for result in results:
        sample = f", sample {result.sample:g}%" if result.sample is not None else ""
        console.print(
            f"{result.service}: against {result.against.value}{sample}, snapshot "
            f"{result.snapshot or '-'}"
            + (f", recorded as {result.verification_id}" if result.verification_id else "")
        )
        for doc in result.doc_types:
            for d in doc.differences:
                reason = f" ({d.reason})" if d.reason else ""
                console.print(
                    f"  {d.kind.value:<8} {doc.doc_type} {d.key}  chunk {d.chunk_id}{reason}"
                )
                if show_values and d.expected_value is not None:
                    console.print(f"    expected: {d.expected_value}", markup=False)
                    console.print(f"    actual:   {d.actual_value}", markup=False)
            for r in doc.rejected:
                row = ", ".join(f"{k}={v}" for k, v in r.source_key.items())
                console.print(
                    f"  rejected {doc.doc_type} {row}  chunk {r.chunk_id}: {r.field}: {r.reason}",
                    markup=False,
                )
