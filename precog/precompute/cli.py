"""`precog precompute`: build a store of likely questions and their answers from a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, invoke_without_command=True)


@app.callback()
def precompute(
    ctx: typer.Context,
    corpus: Annotated[
        Path | None, typer.Option(help="Folder (or file) of .md/.txt/.html/.jsonl documents.")
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Store folder to create or extend.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with a \\[precompute] section.")] = None,
    engine: Annotated[str, typer.Option(help="local (threads here) or ray (a Ray Data pipeline).")] = "local",
    query_log: Annotated[Path | None, typer.Option(help="Historical user queries, one a line.")] = None,
    upstream_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server (overrides the setting).")
    ] = None,
    max_total_tokens: Annotated[int | None, typer.Option(help="Token budget of this invocation.")] = None,
    max_wall_seconds: Annotated[
        float | None, typer.Option(help="Wall-time budget of this invocation.")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Generate likely questions per chunk, drop near duplicates, answer them, capture KV caches, store all.
    Run the same command again after any interruption: it continues where the last run stopped."""
    if ctx.invoked_subcommand is not None:
        return
    if corpus is None or store is None:
        raise typer.BadParameter("--corpus and --store are required")
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
    from precog.core import ConfigError, configure_logging, load_settings
    from precog.precompute.job import PrecomputeError
    from precog.precompute.pipeline import run_precompute
    from precog.precompute.report import print_report
    from precog.precompute.settings import PrecomputeSettings

    configure_logging("warning")
    try:
        settings = load_settings(
            PrecomputeSettings,
            config,
            upstream_url=upstream_url,
            max_total_tokens=max_total_tokens,
            max_wall_seconds=max_wall_seconds,
        )
        report, path = run_precompute(
            settings,
            corpus,
            store,
            "ray" if engine == "ray" else "local",
            query_log,
            progress=not no_progress,
        )
    except (ConfigError, PrecomputeError) as exc:
        typer.echo(f"precompute: {exc}", err=True)
        raise typer.Exit(2) from None
    print_report(report, path)
    if report["failed"]:
        typer.echo(
            f"precompute stopped: {report['stopped_reason']}. Run the same command again to resume.", err=True
        )
        raise typer.Exit(1)
    if not report["complete"]:
        typer.echo(
            f"precompute paused: {report['stopped_reason']}. Run the same command again to continue.",
            err=True,
        )


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write the sample documents into.")] = Path(
        "var/sample-corpus"
    ),
    full: Annotated[
        bool, typer.Option("--full", help="Every article and news story, not the small sample.")
    ] = False,
    articles: Annotated[int, typer.Option(help="Wikipedia articles in the small sample.")] = 3,
    chars: Annotated[int, typer.Option(help="Characters per article in the small sample.")] = 900,
) -> None:
    """Write a sample corpus from the Wikipedia articles and news stories that ship with gensim."""
    from precog.precompute.sample import write_sample

    written = write_sample(out, full=full, articles=articles, chars=chars)
    typer.echo(f"wrote {written} documents to {out}")
