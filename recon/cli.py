"""The `recon` command line (DESIGN.md, "Command line").

    recon run       --date D [--conf C] [--channel NAME ...] [--force-download]
    recon backfill  --from D1 --to D2 [...]
    recon download | normalize | reconcile  --date D [...]
    recon report    [--date D | --from D1 --to D2]
    recon apply-fixes --date D [--apply]

Exit status: 0 done (discrepancies are not failures), 2 bad configuration or
arguments, 3 a statement still unavailable, 4 integrity failure, 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.dates import date_range, parse_date, yesterday
from core.errors import ConfigError, ReconError, combined_exit_code
from recon.config import load_settings

log = logging.getLogger("recon")
DEFAULT_CONF = "conf/pipeline.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon", description="Nightly reconciliation of payment statements.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--conf", default=os.environ.get("RECON_CONF", DEFAULT_CONF),
                       help=f"pipeline configuration (default: $RECON_CONF or {DEFAULT_CONF})")
        p.add_argument("--channel", action="append", dest="channels", metavar="NAME",
                       help="only this channel (repeatable); default: every configured channel")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        p.add_argument("--engine", choices=("spark", "duckdb"),
                       help="the engine that reconciles (default: [engine] kind in the conf; auto: DuckDB for a "
                            "local root and Spark master, Spark for a cluster or hdfs://)")

    for name, text in (("run", "download, normalize and reconcile one date"),
                       ("download", "only fetch the statements into raw/"),
                       ("normalize", "only normalize landed statements into standard/"),
                       ("reconcile", "only reconcile published standard records")):
        p = sub.add_parser(name, help=text)
        common(p)
        p.add_argument("--date", help="business date YYYY-MM-DD (default: yesterday in the business time zone)")
        if name in ("run", "download"):
            p.add_argument("--force-download", action="store_true", help="download again even if already landed")
        if name in ("run", "reconcile"):
            p.add_argument("--cascade", action="store_true",
                           help="also re-run the later dates that carried open items from this date's old result")

    p = sub.add_parser("backfill", help="re-run a range of dates in order")
    common(p)
    p.add_argument("--from", dest="first", required=True, help="first date YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, help="last date YYYY-MM-DD")
    p.add_argument("--force-download", action="store_true")

    p = sub.add_parser("apply-fixes", help="apply a date's corrections to the order database or webhook "
                                           "(dry run unless --apply)")
    common(p)
    p.add_argument("--date", help="business date YYYY-MM-DD (default: yesterday)")
    p.add_argument("--apply", action="store_true", help="really apply (default: print what would change)")

    p = sub.add_parser("report", help="print the summary of reconciled dates")
    common(p)
    p.add_argument("--date")
    p.add_argument("--from", dest="first")
    p.add_argument("--to", dest="last")
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None, *, spark_factory=None, engine: str | None = None) -> int:
    """Entry point; returns the exit status (the console script exits with it). ``engine``: the engine when
    neither ``--engine`` nor the conf names one (spark-submit's jobs/run.py passes "spark")."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad arguments (2)
        return int(exc.code or 0)
    _setup_logging(args.verbose)
    try:
        return _dispatch(args, spark_factory, engine)
    except ReconError as exc:
        print(f"recon: error (exit {exc.exit_code}): {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full or read-only disk where no stage told it better: in words, exit 1
        from core.storage import disk_error

        error = disk_error(exc, writing="a file of the run")
        if error is None:
            raise
        print(f"recon: error (exit {error.exit_code}): {error.describe()}", file=sys.stderr)
        return error.exit_code


def _dispatch(args, spark_factory, engine: str | None = None) -> int:
    from recon.lock import run_lock

    settings = load_settings(args.conf)
    chosen = getattr(args, "engine", None) or (engine if settings.engine.get("kind", "auto") == "auto" else None)
    if chosen:
        import dataclasses

        settings = dataclasses.replace(settings, engine={**settings.engine, "kind": chosen})
    if args.command == "report":
        return _report(settings, args)
    with run_lock(settings.work_dir, settings.root, what=f"recon {args.command}"):
        return _writing_command(args, settings, spark_factory)


def _writing_command(args, settings, spark_factory) -> int:
    from recon.runner import STAGES, process_date, process_range

    if args.command == "apply-fixes":
        from core.storage import Storage
        from recon.fixes import apply_fixes

        day = parse_date(args.date) if args.date else yesterday(settings.timezone)
        return apply_fixes(settings.fixes, Storage(settings.root), day, apply=args.apply, out=sys.stdout,
                           timezone=settings.timezone, conf_file=settings.conf_file)
    if args.command == "backfill":
        days = date_range(parse_date(args.first), parse_date(args.last))
        results = process_range(settings, days, channels=args.channels, force_download=args.force_download,
                                spark_factory=spark_factory)
    else:
        day = parse_date(args.date) if args.date else yesterday(settings.timezone)
        stages = STAGES if args.command == "run" else (args.command,)
        later = _later_results(settings, day) if "reconcile" in stages else []
        if later and getattr(args, "cascade", False):
            results = process_range(settings, date_range(day, later[-1]), channels=args.channels, stages=stages,
                                    force_download=getattr(args, "force_download", False),
                                    spark_factory=spark_factory)
            later = []
        else:
            results = [process_date(settings, day, channels=args.channels, stages=stages,
                                    force_download=getattr(args, "force_download", False),
                                    spark_factory=spark_factory)]
        if later:
            text = ", ".join(d.isoformat() for d in later)
            log.warning("later dates carried open items from the old result of %s: %s", day, text)
            print(f"!! warning: {text} carried open items from the previous result of {day}; re-run them with "
                  f"`recon {args.command} --date {day} --cascade` (or `recon backfill --from "
                  f"{later[0]} --to {later[-1]}`)")
    _print_results(settings, results)
    return combined_exit_code(r.exit_code for r in results)


def _later_results(settings, day):
    """Reconciled dates after ``day``, in order."""
    import datetime as dt

    from core.storage import Storage
    from jobs.reconcile import DATE_DIR
    from schemas.layout import is_reconciled

    storage = Storage(settings.root)
    names = sorted(n for n in storage.list("recon") if DATE_DIR.match(n) and n > day.isoformat())
    return [dt.date.fromisoformat(n) for n in names if is_reconciled(storage, dt.date.fromisoformat(n))]


def _print_results(settings, results) -> None:
    from core.storage import Storage
    from recon.textreport import format_summary
    from schemas.layout import recon_dir

    storage = Storage(settings.root)
    for res in results:
        if res.summary is not None:
            print(format_summary(res.summary, storage.uri(recon_dir(res.day))))
        for channel, err in sorted(res.failures.items()):
            print(f"!! {res.day} {channel}: exit {err.exit_code}: {err.describe()}")
        if res.error is not None:
            print(f"!! {res.day}: exit {res.error.exit_code}: {res.error.describe()}")
    sys.stdout.flush()


def _report(settings, args) -> int:
    from core.storage import Storage
    from recon.textreport import format_summary
    from schemas.layout import is_reconciled, recon_dir

    if args.date:
        days = [parse_date(args.date)]
    elif args.first and args.last:
        days = date_range(parse_date(args.first), parse_date(args.last))
    else:
        raise ConfigError("report needs --date D or --from D1 --to D2")
    storage = Storage(settings.root)
    if len(days) > 1:
        from reports.build import NoResults, write_range_report

        try:
            paths = write_range_report(storage, days[0], days[-1])
        except NoResults as exc:
            print(f"== no published result between {days[0]} and {days[-1]}: {exc}")
            return 1
        for path in paths:
            print(f"range report: {storage.uri(path)}")
    found = False
    for day in days:
        if not is_reconciled(storage, day):
            print(f"== {day}: no published result under {storage.uri(recon_dir(day))}")
            continue
        found = True
        print(format_summary(storage.read_json(recon_dir(day), "summary.json"), storage.uri(recon_dir(day))))
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
