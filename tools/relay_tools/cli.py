"""The `relay` command line (docs/cli.md)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tomllib
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from relay.ingest import jsonbody
from relay.models.config import ConfigError, RelayConfig, config_from_mapping
from relay.models.connections_file import deployed_errors, read_toml
from relay.models.event import VENDORS, EventParseError, event_id_of, events_of, parse_event
from relay.models.names import normal_connection, vendor_of
from relay.queued.routing import Router
from relay.vendors import Invalid, Mapped, MappingResult, Skipped
from relay_tools.config_file import load_config
from relay_tools.connections import signed_headers, signing_source

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
# `relay dev` and `relay ui` stop cleanly on each. SIGINT (Ctrl-C) too is handled here, not left to Python's
# KeyboardInterrupt: a process started in the background by a non-interactive shell (a CI step's `cmd &`)
# inherits SIGINT ignored, and Python then installs no handler of its own
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_CONFIG = "relay.toml"


class UsageError(Exception):
    pass


def resolve_config(path: str | None, err: TextIO) -> RelayConfig:
    """--config, else ./relay.toml, else the bundled example (placeholders, said on stderr)."""
    if path is not None:
        return load_config(path)
    if Path(DEFAULT_CONFIG).exists():
        return load_config(DEFAULT_CONFIG)
    print("relay: no --config and no ./relay.toml: using the example configuration", file=err)
    text = resources.files("relay_tools").joinpath("example.toml").read_text(encoding="utf-8")
    return config_from_mapping(tomllib.loads(text), "relay.example.toml")


def _outcome_json(outcome: MappingResult, router: Router, vendor: str) -> dict[str, Any]:
    if isinstance(outcome, Mapped):
        adapter = router.adapters[vendor]
        return {
            "status": "ok",
            "identifiers": adapter.identifiers(outcome.payload),  # what the vendor can match the event on
            "request": adapter.request_for(outcome).describe(),
        }
    if isinstance(outcome, Skipped):
        return {"status": "skipped", "reason": outcome.reason}
    return {"status": "invalid", "errors": [e.as_dict() for e in outcome.errors]}


def _print_human(index: int, total: int, event_id: str | None, name: str, result: dict[str, Any], out: TextIO) -> None:
    print(f"event {index + 1}/{total}: {name} (event_id {event_id})", file=out)
    if "errors" in result:
        print("  rejected: the event does not match the canonical schema", file=out)
        for e in result["errors"]:
            print(f"    - {e['field']}: {e['message']}", file=out)
        return
    for vendor, v in result["vendors"].items():
        if v["status"] == "ok":
            req = v["request"]
            print(f"  {vendor}: ok (identifiers: {', '.join(v['identifiers']) or 'none'})", file=out)
            print(f"    {req['method']} {req['url']}", file=out)
            for key, value in req["headers"].items():
                print(f"    {key}: {value}", file=out)
            body = json.dumps(req["json"], indent=2, ensure_ascii=False)
            print("\n".join("    " + line for line in body.splitlines()), file=out)
        elif v["status"] == "skipped":
            print(f"  {vendor}: skipped: {v['reason']}", file=out)
        else:
            print(f"  {vendor}: invalid", file=out)
            for e in v["errors"]:
                print(f"    - {e['field']}: {e['message']}", file=out)


def _only_source(config: RelayConfig) -> str:
    """The source a command routes as when none is named: the only one, else the one named default."""
    sources = config.source_configs()
    if len(sources) == 1:
        return next(iter(sources))
    if "default" not in sources:
        raise UsageError(f"--source: the configuration has several sources ({', '.join(sources)}): name one")
    return "default"


def preview(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = resolve_config(args.config, err)
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        data = jsonbody.loads(raw)
    except jsonbody.JsonBodyError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    try:
        raw_events = events_of(data)
    except EventParseError as exc:
        raise UsageError("; ".join(map(str, exc.errors))) from None
    router = Router(config)
    source = args.source or _only_source(config)
    if source not in config.source_configs():
        raise UsageError(f"--source: no source named '{source}' (sources: {', '.join(config.source_configs())})")
    now = datetime.now(UTC)
    code = EXIT_OK
    for index, raw_event in enumerate(raw_events):
        result: dict[str, Any] = {"index": index, "event_id": event_id_of(raw_event)}
        name = raw_event.get("name") if isinstance(raw_event, dict) else None
        try:
            event = parse_event(raw_event, now=now, max_event_age_days=config.ingest.max_event_age_days)
        except EventParseError as exc:
            result["errors"] = [e.as_dict() for e in exc.errors]
            code = EXIT_USAGE
        else:
            outcomes = {
                c: o
                for c, o in router.route(event, source).items()
                if args.vendor in (None, vendor_of(c)) and (not args.connection or c in args.connection)
            }
            result["vendors"] = {c: _outcome_json(o, router, c) for c, o in outcomes.items()}
            if code == EXIT_OK and any(isinstance(o, Invalid) for o in outcomes.values()):
                code = EXIT_INVALID
        if args.json:
            print(json.dumps(result, ensure_ascii=False), file=out)
        else:
            _print_human(index, len(raw_events), result["event_id"], str(name), result, out)
    return code


def config_check_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay config check FILE`: the configuration validated as the functions will read it; `--deployed`: the
    connections file shipped with the functions (no secret, only sources and connections)."""
    path = Path(args.file)
    try:
        data = read_toml(path)
        errors = deployed_errors(data) if args.deployed else []
        if errors:
            raise ConfigError(errors, str(path))
        config = config_from_mapping(data, str(path), credentials=not args.deployed)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{path}: {error}", file=err)
        return EXIT_INVALID
    sources = config.source_configs()
    print(f"{path}: OK", file=out)
    for name in sources:
        reach = config.reachable(name)
        print(f"  source {name}: {len(reach)} connection(s): {', '.join(reach) or 'none'}", file=out)
    disabled = [c for c in config.sections() if c not in config.connection_ids]
    print(
        f"  {len(config.connection_ids)} enabled connection(s)"
        + (f"; disabled: {', '.join(disabled)}" if disabled else ""),
        file=out,
    )
    return EXIT_OK


def config_deployed_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay config deployed FILE`: shared/connections.toml for FILE (its secrets left out: Secrets Manager's)."""
    from relay_tools.connections import deployed_file, toml_text

    config = load_config(args.file)
    out.write(f"# shared/connections.toml, from {Path(args.file).name} (docs/connections.md)\n")
    out.write(toml_text(deployed_file(config)) + "\n")
    return EXIT_OK


def openapi_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.openapi import openapi_json

    text = openapi_json()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        out.write(text)
    return EXIT_OK


def _read_events(files: list[str]) -> list[Any]:
    raw_events: list[Any] = []
    for name in files:
        try:
            raw_events += events_of(jsonbody.loads(Path(name).read_bytes()))
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        except (jsonbody.JsonBodyError, EventParseError) as exc:
            raise UsageError(f"{name}: {exc}") from None
    return raw_events


def lambda_event_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """A ready event for `sam local invoke`: a freshly signed API Gateway request for the ingest, or
    the SQS batch a vendor function receives (the messages the ingest would publish)."""
    import hashlib
    import uuid

    from relay.ingest.signing import HEADER, sign
    from relay_tools.apigw import http_api_event
    from relay_tools.sqs_events import lambda_records

    config = resolve_config(args.config, err)
    raw_events = _read_events(args.files)
    if args.kind == "ingest":
        secrets = [s.get_secret_value() for s in config.ingest.secrets]
        if not secrets:
            raise UsageError("no [ingest] secrets in the configuration: cannot sign")
        body = json.dumps({"events": raw_events}).encode("utf-8")
        headers = {"content-type": "application/json", HEADER.lower(): sign(body, secrets[0])}
        event = http_api_event("POST", "/v1/events", headers, body)
    else:
        from relay.queued.message import queued_body

        now = datetime.now(UTC)
        router = Router(config)
        messages = []
        for raw_event in raw_events:
            try:
                parsed = parse_event(raw_event, now=now, max_event_age_days=config.ingest.max_event_age_days)
            except EventParseError as exc:
                raise UsageError("; ".join(map(str, exc.errors))) from None
            outcomes = router.route(parsed)
            why = outcomes[args.kind]
            if isinstance(why, Skipped | Invalid):
                raise UsageError(f"event {parsed.event_id} does not go to {args.kind}: {why.reason}")
            text = queued_body(parsed, outcomes)
            messages.append(
                {
                    "MessageId": str(uuid.uuid4()),
                    "ReceiptHandle": uuid.uuid4().hex,
                    "Body": text,
                    "MD5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
                    "Attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": str(int(now.timestamp() * 1000)),
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": str(int(now.timestamp() * 1000)),
                    },
                    "MessageAttributes": {
                        "destinations": {"DataType": "String.Array", "StringValue": json.dumps([args.kind])}
                    },
                }
            )
        event = lambda_records(messages, f"arn:aws:sqs:us-east-1:123456789012:{args.kind}-queue", "us-east-1")
    out.write(json.dumps(event, indent=2) + "\n")
    return EXIT_OK


def dlq_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay dlq list|redrive|purge`: every vendor unless --vendor; the local stack unless --stack."""
    from relay_tools.queues import vendor_queues

    if args.vendor_word and args.vendor and args.vendor_word != args.vendor:
        raise UsageError(f"VENDOR: {args.vendor_word} and --vendor {args.vendor} name two vendors; name one")
    args.vendor = args.vendor or args.vendor_word
    if args.action == "purge" and not args.vendor:
        raise UsageError(f"purge needs the vendor: relay dlq purge VENDOR --yes ({', '.join(VENDORS)})")
    if args.action == "purge" and not args.yes:
        raise UsageError("purge deletes every message of the DLQ: add --yes to confirm")
    connections = sorted({normal_connection(c) for c in getattr(args, "connection", None) or []})
    vendors = sorted({vendor_of(c) for c in connections}) or ([args.vendor] if args.vendor else list(VENDORS))
    if args.vendor and vendors != [args.vendor]:
        raise UsageError(f"--connection: {', '.join(connections)} is not a connection of --vendor {args.vendor}")
    if args.action != "list" and len(vendors) != 1:
        raise UsageError(f"{args.action} needs --vendor (one of {', '.join(VENDORS)}) or --connection")
    args.connections = set(connections)
    config = None if args.stack else resolve_config(args.config, err)
    codes = []
    for vendor in vendors:
        queues = vendor_queues(
            vendor, stack=args.stack, config=config, region=args.region, endpoint_url=args.endpoint_url
        )
        codes.append(_dlq_action(args, vendor, queues, out, err))
    return max(codes)


def _dlq_action(args: argparse.Namespace, vendor: str, queues: Any, out: TextIO, err: TextIO) -> int:
    from relay_tools.queues import letter_connection, peek_letters, redrive_letters

    client = queues.client
    if args.action == "purge" and args.event_id:
        from relay_tools.queues import purge_letters

        deleted, found = purge_letters(queues, set(args.event_id))
        print(f"deleted {deleted} message(s) from the {vendor} dead-letter queue", file=out)
        missing = sorted(set(args.event_id) - found)
        if missing:
            print(f"relay: not in the DLQ: {', '.join(missing)}", file=err)
            return EXIT_INVALID
        return EXIT_OK
    if args.action == "purge":
        client.purge_queue(QueueUrl=queues.dlq_url)
        print(f"purged the {vendor} dead-letter queue", file=out)
        return EXIT_OK
    if args.action == "list":
        letters = peek_letters(queues)
        if args.connections:
            letters = [letter for letter in letters if letter_connection(letter, vendor) in args.connections]
        if args.json:
            for letter in letters:
                print(json.dumps({"vendor": vendor, **letter.summary()}), file=out)
            return EXIT_OK
        of = f" of {', '.join(sorted(args.connections))}" if args.connections else ""
        print(f"{len(letters)} message(s){of} in the {vendor} dead-letter queue", file=out)
        for letter in letters:
            s = letter.summary()
            connection = letter_connection(letter, vendor)
            print(
                f"  {s['event_id']}  {connection}  status={s['status']}  attempts={s['attempts']}  when={s['when']}\n"
                f"    {s['outcome']}: {s['reason']}",
                file=out,
            )
            if s["vendor_response"]:
                print(f"    {vendor} answered: {s['vendor_response']}", file=out)
        return EXIT_OK
    wanted = set(args.event_id or [])
    moved, found = redrive_letters(queues, wanted, args.connections, vendor)
    print(f"moved {moved} message(s) back to the {vendor} queue", file=out)
    missing = wanted - found
    if missing:
        print(f"relay: not in the DLQ: {', '.join(sorted(missing))}", file=err)
        return EXIT_INVALID
    return EXIT_OK


def replay_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay replay`: archived events queued again (relay_tools.replay); exit 1 when an event could not be."""
    from relay.models.names import is_connection, is_name
    from relay_tools.archive_store import archive_stack
    from relay_tools.replay import Checkpoint, Replay, default_checkpoint, print_summary, progress_bar

    request = _replay_request(args)
    bad = [c for c in request.connections if not is_connection(c)]
    if bad:
        raise UsageError(f"--connection: {bad[0]!r} is not a connection id (vendor or vendor.name)")
    bad = [s for s in request.sources if not is_name(s)]
    if bad:
        raise UsageError(f"--source: {bad[0]!r} is not a source's name")
    if args.rate <= 0:
        raise UsageError("--rate: must be more than 0 events a second")
    config = None if args.stack else resolve_config(args.config, err)
    archive = archive_stack(stack=args.stack, config=config, region=args.region, endpoint_url=args.endpoint_url)
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint(archive.name, request.replay_id)
    replay = Replay(
        request,
        archive,
        Checkpoint(path, request.replay_id),
        dry_run=args.dry_run,
        rate=args.rate,
        progress=None if args.json else progress_bar(err),
    )
    try:
        tally = replay.run()
    except Exception as exc:  # noqa: BLE001 - botocore's errors: said in one line; the checkpoint resumes it
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
        print(f"relay: the replay stopped ({code}); run it again with the same arguments to resume", file=err)
        return EXIT_USAGE
    failed = bool(tally.invalid) or replay.unpublished > 0
    if args.json:
        report = {
            "replay": request.replay_id,
            "again": request.again,
            "dry_run": args.dry_run,
            "events": tally.events,
            "connections": tally.counts,
            "superseded": tally.superseded,
            "too_old": tally.too_old,
            "invalid": tally.invalid,
            "not_queued": replay.unpublished,
        }
        print(json.dumps(report), file=out)
    else:
        what = "dry run of replay" if args.dry_run else "replay"
        print(
            f"{what} {request.replay_id}{' (--again)' if request.again else ''}: {tally.events} archived events",
            file=out,
        )
        print_summary(tally, out, args.dry_run)
        if replay.unpublished:
            print(f"relay: SNS did not take {replay.unpublished} event(s): run the replay again", file=err)
    return EXIT_INVALID if failed else EXIT_OK


def _replay_request(args: argparse.Namespace) -> Any:
    from relay_tools.replay import ReplayRequest, parse_time

    try:
        since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until") if args.until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    until_now = until is None
    until = until or datetime.now(UTC)
    if since >= until:
        raise UsageError("--since: must be before --until")
    ids = list(args.event_id or [])
    if args.ids_file:
        try:
            ids += [line.strip() for line in Path(args.ids_file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise UsageError(f"--ids-file: cannot read {args.ids_file}: {exc.strerror}") from None
    if args.max_age_days is not None and args.max_age_days < 1:
        raise UsageError("--max-age-days: must be at least 1")
    return ReplayRequest(
        since,
        until,
        tuple(args.source or ()),
        tuple(normal_connection(c) for c in args.connection or () if c),
        tuple(ids),
        args.again,
        args.max_age_days,
        until_now,
    )


def import_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay import FILE`: validate every row, then send the good ones (relay_tools.importing); exit 1 when a
    row was bad or refused, 2 when the relay could not take the rest (run it again: it resumes)."""
    from relay_tools import importing

    if args.rate <= 0:
        raise UsageError("--rate: must be more than 0 events a second")
    path = Path(args.file)
    config = resolve_config(args.config, err)
    try:
        mapping = importing.parse_pairs(args.map, "--map")
        constants = importing.parse_pairs(args.set, "--set")
        source, secret = signing_source(config, args.source)
        secret = os.environ.get("RELAY_SECRET") or secret  # a deployed stack's, as the clients read it
        rows = importing.read_rows(path, mapping, constants)
        url = args.url or f"http://127.0.0.1:{config.local.ingest_port}/v1/events"
        client = importing.relay_client()
        checkpoint = Path(args.checkpoint) if args.checkpoint else importing.default_checkpoint(path, source)

        def send(body: bytes) -> tuple[int, dict[str, Any]]:
            named = None if source == "default" else source
            return client.send(url, secret, body, source=named, log=lambda line: print(line, file=err))

        bar = None if args.json or not err.isatty() else _import_bar(err)
        importer = importing.Importer(config, source, send, checkpoint, args.rate, progress=bar)
        report = importing.ImportReport()
        good = importer.validate(rows, report)
    except (importing.ImportError_, ValueError) as exc:
        raise UsageError(str(exc)) from None
    complete = True
    if not args.dry_run:
        try:
            complete = importer.run(good, report)
        except OSError as exc:
            print(f"relay: cannot reach {url}: {exc}; run the import again to resume", file=err)
            complete = False
    if args.json:
        print(json.dumps({**importing.report_json(report), "dry_run": args.dry_run, "complete": complete}), file=out)
    else:
        _print_import(report, len(good), args.dry_run, out)
    if not complete:
        print("relay: the ingest did not take every request; run the import again to resume", file=err)
        return EXIT_USAGE
    return EXIT_INVALID if report.bad or report.rejected else EXIT_OK


def _import_bar(err: TextIO) -> Any:
    def show(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        err.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} events")
        if done == total:
            err.write("\n")
        err.flush()

    return show


def _print_import(report: Any, good: int, dry_run: bool, out: TextIO) -> None:
    for bad in report.bad:
        print(f"line {bad['line']}: {'; '.join(bad['errors'])}", file=out)
    for refused in report.rejected:
        print(f"line {refused['line']}: refused by the relay: {'; '.join(refused['errors'])}", file=out)
    for partial in report.partial:
        for connection, errors in partial["invalid"].items():
            print(f"line {partial['line']}: {connection} finds it invalid: {'; '.join(errors)}", file=out)
    if dry_run:
        print(f"{report.rows} row(s): {good} valid, {len(report.bad)} invalid (dry run: nothing sent)", file=out)
        return
    resumed = f", resumed after {report.resumed_from}" if report.resumed_from else ""
    print(
        f"{report.rows} row(s): {len(report.bad)} invalid, {report.sent} of {good} sent{resumed} "
        f"({report.accepted - report.duplicates} new, {report.duplicates} already imported, "
        f"{len(report.rejected)} refused)",
        file=out,
    )


def forget_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay forget`: a person's events erased (relay_tools.forget); exit 1 when none was found."""
    from relay_tools.archive_store import archive_stack
    from relay_tools.forget import Forget, person

    try:
        who = person(
            args.user_id or [],
            args.email or [],
            args.email_sha256 or [],
            args.phone or [],
            args.phone_sha256 or [],
            args.country,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not who:
        raise UsageError("name the person: --user-id, --email, --email-sha256, --phone or --phone-sha256")
    config = None if args.stack else resolve_config(args.config, err)
    archive = archive_stack(stack=args.stack, config=config, region=args.region, endpoint_url=args.endpoint_url)
    result = Forget(archive, who, dry_run=args.dry_run).run()
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "dry_run": args.dry_run}), file=out)
    else:
        verb = "would erase" if args.dry_run else "erased"
        print(f"{verb} {len(result.events)} event(s) of this person", file=out)
        for event in summary["events"]:
            print(f"  {event['event_id']}  (source {event['source']})", file=out)
        print(
            f"archive: {result.objects_rewritten} object(s) rewritten, {result.objects_deleted} deleted, "
            f"{result.error_records} from error records; journeys: {result.journey_items} item(s) rewritten; "
            f"ledger: {result.claims_forgotten} claim(s) forgotten, {result.dead_letter_reasons} dead-letter "
            "reason(s) dropped",
            file=out,
        )
    return EXIT_OK if result.events or result.error_records else EXIT_INVALID


def trace_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay trace EVENT_ID`: the event's journey; exit 1 when the relay does not know it."""
    from relay.journey.trace import trace_event
    from relay_tools.journeys import journey_table, print_journey

    config = None if args.stack else resolve_config(args.config, err)
    table = journey_table(stack=args.stack, config=config, region=args.region, endpoint_url=args.endpoint_url)
    try:
        connections = config.sections() if config is not None else VENDORS
        journey = trace_event(table, args.event_id, args.source, connections)
    except Exception as exc:  # noqa: BLE001 - botocore's errors: said in one line, not a traceback
        raise UsageError(f"cannot read the journey of {args.event_id!r}: {type(exc).__name__}") from None
    if journey is None:
        whose = "" if args.source == "default" else f" from source {args.source!r}"
        print(
            f"relay: no event {args.event_id!r}{whose} is known (never accepted, older than the ledger's horizon, "
            "or erased by relay forget)",
            file=err,
        )
        return EXIT_INVALID
    if args.json:
        print(json.dumps(journey, indent=2), file=out)
    else:
        print_journey(journey, out)
    return EXIT_OK


def refused_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay refused`: the requests the ingest refused (7 days), newest first."""
    from relay.journey.refusals import RefusalLog
    from relay_tools.journeys import journey_table, parse_since, refusal_line

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = None if args.stack else resolve_config(args.config, err)
    table = journey_table(stack=args.stack, config=config, region=args.region, endpoint_url=args.endpoint_url)
    try:
        refused = RefusalLog(table).recent(since.timestamp(), args.source, args.limit)
    except Exception as exc:  # noqa: BLE001 - botocore's errors: said in one line, not a traceback
        raise UsageError(f"cannot read the refused requests: {type(exc).__name__}") from None
    refused = [{k: v for k, v in r.items() if k != "written_at"} for r in refused]
    if args.json:
        print(json.dumps(refused, indent=2), file=out)
        return EXIT_OK
    if not refused:
        whose = f" naming source {args.source!r}" if args.source else ""
        print(f"no request{whose} refused since {since.isoformat(timespec='seconds')}", file=out)
    for refusal in refused:
        ids = refusal.get("event_ids") or []
        named = f"  events {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}" if ids else ""
        print(refusal_line(refusal) + named, file=out)
        if refusal.get("not_recorded"):
            print(
                f"    ({refusal['not_recorded']} refusal(s) before this one not recorded: the flood budget)", file=out
            )
    return EXIT_OK


def ui_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`relay ui`: the debugger page on 127.0.0.1 against a deployed stack (or the local one)."""
    import threading

    from relay_tools.journeys import journey_table
    from relay_tools.queues import vendor_queues
    from relay_tools.ui import Debugger, serve

    config = None if args.stack else resolve_config(args.config, err)
    where = {"stack": args.stack, "region": args.region, "endpoint_url": args.endpoint_url}
    table = journey_table(config=config, **where)
    queues = {vendor: vendor_queues(vendor, config=config, **where) for vendor in VENDORS}
    try:
        server = serve(Debugger(table, queues.__getitem__), args.port)
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}") from None
    print(f"debugger: http://127.0.0.1:{server.server_address[1]}/   Ctrl-C stops.", file=out, flush=True)
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in STOP_SIGNALS}
    threading.Thread(target=server.serve_forever, name="ui", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    try:
        _run_until(stopping, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _run_until(stopping: Any, stop: Any) -> None:
    """Wait for `stopping` (a signal) or Ctrl-C, then `stop()`."""
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def dev_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import threading

    from relay_tools.console import Console
    from relay_tools.dev import LocalStack

    config = resolve_config(args.config, err)
    stack = LocalStack(config, ingest_port=args.port, log=Console(out))
    stopping = threading.Event()
    stack.on_failure = stopping.set
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in STOP_SIGNALS}
    try:
        try:
            stack.start()
        except (OSError, ValueError, RuntimeError) as exc:
            stack.stop()
            raise UsageError(f"cannot start the local stack: {exc}") from None
        _serve(stack, config, stopping, out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stack.failure:
        print(f"relay dev: {stack.failure}", file=err)
        return EXIT_INVALID
    return EXIT_OK


def _serve(stack: Any, config: RelayConfig, stopping: Any, out: TextIO) -> None:
    """Print where the local stack serves, then run it until Ctrl-C, SIGTERM or SIGHUP."""
    print(f"ingest:         {stack.ingest_url}", file=out)
    print(f"debugger:       {stack.debugger_url}   (events, journeys, DLQs)", file=out)
    for name, source in config.source_configs().items():
        secret = source.secrets[0].get_secret_value()
        if name == "default":
            print(f"signing secret: {secret}   (from [ingest] secrets of your config)", file=out)
        else:
            print(f"source {name}: {secret}   (sources.{name}.secrets; send with X-Relay-Source: {name})", file=out)
    print(f"AWS endpoint:   {stack.aws_endpoint}   (moto; any credentials)", file=out)
    named = [c for c in config.connection_ids if "." in c]
    if named:
        print(f"connections:    {', '.join(config.connection_ids)}", file=out)
    if stack.sandboxes:
        print(f"sandboxes:      {stack.sandboxes.url}   (relay sandbox requests)", file=out)
    if stack.archive is not None:
        print(f"archive:        s3://{stack.archive.bucket}/events/   (relay replay, relay forget)", file=out)
    print("Ctrl-C stops.", file=out, flush=True)

    def stop() -> None:
        stack.stop()
        print("stopped.", file=out, flush=True)

    _run_until(stopping, stop)


def send_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import httpx

    config = resolve_config(args.config, err)
    try:
        data = jsonbody.loads(Path(args.file).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    except jsonbody.JsonBodyError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    body = data if isinstance(data, dict) and "events" in data else {"events": [data]}
    if args.new_id:  # a sample sent again is otherwise a duplicate, and nothing happens
        stamp = uuid.uuid4().hex[:8]
        for event in body.get("events") or []:
            if isinstance(event, dict):
                event["event_id"] = f"{event.get('event_id', 'event')}-{stamp}"[:128]
    raw = json.dumps(body).encode("utf-8")
    url = args.url or f"http://127.0.0.1:{config.local.ingest_port}/v1/events"
    try:
        headers = signed_headers(raw, config, args.source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        response = httpx.post(url, content=raw, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach {url}: {type(exc).__name__} (is `relay dev` running?)") from None
    print(f"HTTP {response.status_code}", file=out)
    try:
        print(json.dumps(response.json(), indent=2, ensure_ascii=False), file=out)
    except ValueError:
        print(response.text, file=out)
    return EXIT_OK if response.is_success else EXIT_INVALID


def sandbox_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import httpx

    config = resolve_config(args.config, err)
    url = f"http://127.0.0.1:{config.local.sandbox_port}/_sandbox/requests"
    try:
        response = httpx.get(url, params={"vendor": args.vendor} if args.vendor else None, timeout=10)
    except httpx.HTTPError as exc:
        raise UsageError(
            f"cannot reach the sandboxes at {url}: {type(exc).__name__} (is `relay dev` running?)"
        ) from None
    rows = response.json()
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False), file=out)
        else:
            print(
                f"{row['connection']:<14} {row['status']}  {row['events']:>3} event(s)  {row['url']}  {row['message']}",
                file=out,
            )
    if not args.json:
        print(f"{len(rows)} request(s)", file=out)
    return EXIT_OK


def sam_env_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.dev import ROOT, sam_local_env
    from relay_tools.stack import load_template

    config = resolve_config(args.config, err)
    env = sam_local_env(load_template(ROOT / "template.yaml"), config, host=args.host)
    out.write(json.dumps(env, indent=2, sort_keys=True) + "\n")
    return EXIT_OK


def cost_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.cost import report

    if args.events_per_month < 1 or args.events_per_request < 1:
        raise UsageError("--events-per-month and --events-per-request must be at least 1")
    if args.outage_hours is not None and not 0 < args.outage_hours <= 72:
        raise UsageError("--outage-hours must be more than 0 and at most 72 (the longest retry window)")
    result = report(args.events_per_month, args.events_per_request, not args.no_journey, args.capacity)
    if args.json:
        print(json.dumps(result, indent=2), file=out)
        return EXIT_OK
    print(
        f"AWS cost, us-east-1 prices as of {result['prices_as_of']}, {args.events_per_request} event(s) per "
        f"ingest request, every event to all three vendors, journeys {'off' if args.no_journey else 'kept'}, "
        f"DynamoDB {result['capacity']}:",
        file=out,
    )
    for line in result["lines"]:
        print(f"  {line['item']:<22} ${line['usd_per_million']:>8.4f} per million   ({line['basis']})", file=out)
    print(f"  {'total':<22} ${result['usd_per_million_events']:>8.4f} per million events", file=out)
    print(f"  {args.events_per_month:,} events per month: ${result['usd_per_month']:,.2f}", file=out)
    if args.outage_hours:
        from relay_tools.cost import outage_cost

        print(f"A vendor outage of {args.outage_hours:g} h, per million events waiting for the vendor:", file=out)
        for vendor in VENDORS:
            o = outage_cost(vendor, args.outage_hours, events_per_request=args.events_per_request)
            print(
                f"  {vendor:<22} ${o['usd']:>8.4f}   ({o['receives_per_message']:.0f} receives per message)", file=out
            )
    return EXIT_OK


def load_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.load import local_load, run_load

    if args.seconds <= 0 or not 1 <= args.per_request <= 100 or args.concurrency < 1:
        raise UsageError("--seconds must be > 0, --per-request 1 to 100, --concurrency at least 1")
    if args.local:
        if args.url or args.config:
            raise UsageError("--local starts its own local stack: drop --url and --config")
        report = local_load(args.seconds, args.per_request, args.concurrency)
    else:
        config = resolve_config(args.config, err)
        if not config.ingest.secrets:
            raise UsageError("no [ingest] secrets in the configuration: cannot sign")
        url = args.url or f"http://127.0.0.1:{config.local.ingest_port}/v1/events"
        secret = config.ingest.secrets[0].get_secret_value()
        report = run_load(url, secret, args.seconds, args.per_request, args.concurrency)
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    print(report.line(), file=out)
    for example in report.error_examples:
        print(f"  error: {example}", file=out)
    return EXIT_OK if report.errors == 0 and report.requests > 0 else EXIT_INVALID


def soak_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.faults import FaultPlan
    from relay_tools.soak import run_soak

    if args.events < 1 or not 1 <= args.per_request <= 100:
        raise UsageError("--events must be at least 1, --per-request 1 to 100")
    report = run_soak(events=args.events, per_request=args.per_request, plan=FaultPlan(seed=args.seed))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    for line in report.lines():
        print(line, file=out)
    return EXIT_OK if report.passed else EXIT_INVALID


def parse_outages(values: list[str] | None) -> dict[str, tuple[str, float]] | None:
    """`--outage adroll=401:2` -> {"adroll": ("401", 2.0)}; None: the default outages."""
    from relay_tools.outage import KINDS

    if not values:
        return None
    out: dict[str, tuple[str, float]] = {}
    for value in values:
        vendor, _, rest = value.partition("=")
        kind, _, hours = rest.partition(":")
        try:
            length = float(hours)
        except ValueError:
            length = -1.0
        if vendor not in VENDORS or kind not in KINDS or not 0 < length <= 72:
            raise UsageError(
                f"--outage {value!r}: expected VENDOR=KIND:HOURS with VENDOR one of {', '.join(VENDORS)}, "
                f"KIND one of {', '.join(KINDS)} and 0 < HOURS <= 72"
            )
        out[vendor] = (kind, length)
    return out


def outage_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.outage import run_outage

    if not 0 < args.hour_seconds <= 60 or not 0 < args.window_hours <= 72 or not 1 <= args.probe_seconds <= 3600:
        raise UsageError("--hour-seconds must be 0 to 60, --window-hours 0 to 72, --probe-seconds 1 to 3600")
    if args.traffic_hours is not None and not 0 < args.traffic_hours <= 240:
        raise UsageError("--traffic-hours must be more than 0 and at most 240")
    report = run_outage(
        hour_seconds=args.hour_seconds,
        window_hours=args.window_hours,
        outages=parse_outages(args.outage),
        probe_seconds=args.probe_seconds,
        traffic_hours=args.traffic_hours,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    for line in report.lines():
        print(line, file=out)
    return EXIT_OK if report.passed else EXIT_INVALID


def demo_cmd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from relay_tools.demo import run_demo

    config = resolve_config(args.config, err)
    paths = [Path(p) for p in args.sample or []]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--sample {path}: no such file")
    return run_demo(config, out=lambda line: print(line, file=out, flush=True), paths=paths or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="S2S Relay: server-side conversions to AppLovin, AppsFlyer, AdRoll"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="show the exact vendor requests for canonical events, without sending")
    p.add_argument(
        "file", metavar="EVENT.json", help='one canonical event or an ingest body {"events": [...]}; - for stdin'
    )
    p.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    p.add_argument("--vendor", choices=VENDORS, help="show only this vendor's connections")
    p.add_argument("--connection", action="append", help="show only this connection (repeatable): applovin.eu")
    p.add_argument("--source", help="route as this source (default: the only source, else the one named default)")
    p.add_argument("--json", action="store_true", help="one JSON object per event, one per line")
    p.set_defaults(func=preview)
    cf = sub.add_parser("config", help="check a configuration file before it is deployed")
    cf_sub = cf.add_subparsers(dest="action", required=True)
    cc = cf_sub.add_parser("check", help="validate FILE as the functions will read it; errors name the key")
    cc.add_argument("file", metavar="FILE", help="a relay.toml, or with --deployed the connections file to ship")
    cc.add_argument(
        "--deployed",
        action="store_true",
        help="FILE is shared/connections.toml: sources and connections only, no secret (make build checks it)",
    )
    cc.set_defaults(func=config_check_cmd)
    cd = cf_sub.add_parser("deployed", help="print FILE's sources and connections as the connections file to ship")
    cd.add_argument("file", metavar="FILE", help="a relay.toml declaring sources or connections")
    cd.set_defaults(func=config_deployed_cmd)
    o = sub.add_parser("openapi", help="print the ingest API's OpenAPI document (generated from the models)")
    o.add_argument("--output", help="write to this file instead of stdout")
    o.set_defaults(func=openapi_cmd)
    e = sub.add_parser("lambda-event", help="print a Lambda event for sam local invoke (signed now)")
    e.add_argument("kind", choices=("ingest", *VENDORS), help="ingest: API Gateway request; vendor: its SQS batch")
    e.add_argument("files", nargs="+", metavar="EVENT.json", help="canonical events (or ingest bodies) to put in it")
    e.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    e.set_defaults(func=lambda_event_cmd)
    v = sub.add_parser("dev", help="run the whole relay locally (moto, handlers, pollers, vendor sandboxes)")
    v.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    v.add_argument("--port", type=int, help="ingest port (default: [local] ingest_port, 3000)")
    v.set_defaults(func=dev_cmd)
    sd = sub.add_parser("send", help="sign a file of canonical events and POST it to the ingest")
    sd.add_argument("file", metavar="FILE.json", help='one canonical event, a list of them, or {"events": [...]}')
    sd.add_argument("--url", help="ingest URL (default: the local stack's)")
    sd.add_argument("--new-id", action="store_true", help="give every event a fresh event_id (resend a sample)")
    sd.add_argument("--source", help="sign as this source (default: the only source, else the one named default)")
    sd.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    sd.set_defaults(func=send_cmd)
    sb = sub.add_parser("sandbox", help="what the local vendor sandboxes received")
    sb_sub = sb.add_subparsers(dest="action", required=True)
    sr = sb_sub.add_parser("requests", help="list the requests the sandboxes received")
    sr.add_argument("--vendor", choices=VENDORS, help="only this vendor's sandbox (default: every vendor)")
    sr.add_argument("--json", action="store_true", help="the requests as JSON")
    sr.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    sr.set_defaults(func=sandbox_cmd)
    se = sub.add_parser("sam-env", help="print an --env-vars file for sam local, pointing at the local stack")
    se.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    se.add_argument("--host", default="host.docker.internal", help="how Docker containers reach the host")
    se.set_defaults(func=sam_env_cmd)
    co = sub.add_parser("cost", help="AWS cost per million events and per month (the model make bench uses)")
    co.add_argument("--events-per-month", type=int, required=True, help="events your backends send a month")
    co.add_argument("--events-per-request", type=int, default=100, help="events per ingest request (default 100)")
    co.add_argument("--json", action="store_true", help="the model's lines as JSON")
    co.add_argument(
        "--outage-hours", type=float, help="also what a vendor outage this long adds, per million events waiting"
    )
    co.add_argument("--no-journey", action="store_true", help="without the events' journeys (Journey=false)")
    co.add_argument(
        "--capacity",
        choices=("on-demand", "provisioned"),
        help="DynamoDB's capacity mode (TableCapacity; default: the template's, on-demand)",
    )
    co.set_defaults(func=cost_cmd)
    dm = sub.add_parser("demo", help="start the local stack, send every sample, print the outcomes, stop")
    dm.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    dm.add_argument("--sample", action="append", metavar="EVENT.json", help="only this sample (repeatable)")
    dm.set_defaults(func=demo_cmd)
    ld = sub.add_parser("load", help="sustained signed requests at an ingest URL; requests/s, latency, errors")
    ld.add_argument("--url", help="ingest URL (default: the local stack's)")
    ld.add_argument("--config", help=f"relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)")
    ld.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    ld.add_argument("--per-request", type=int, default=1, help="events per request (1 to 100)")
    ld.add_argument("--concurrency", type=int, default=4, help="clients sending side by side")
    ld.add_argument("--local", action="store_true", help="start the local stack here and send from a second process")
    ld.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    ld.set_defaults(func=load_cmd)

    sk = sub.add_parser("soak", help="fault soak through the local stack: exactly-once under injected faults")
    sk.add_argument("--events", type=int, default=1500, help="events to send (default 1500)")
    sk.add_argument("--per-request", type=int, default=50, help="events per ingest request")
    sk.add_argument("--seed", type=int, default=7, help="seed of the fault mix and of which events are invalid")
    sk.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    sk.set_defaults(func=soak_cmd)

    og = sub.add_parser(
        "outage", help="vendor outages through the local stack, time compressed: retries, circuit, redrive"
    )
    og.add_argument("--hour-seconds", type=float, default=3.0, help="real seconds that stand for one hour")
    og.add_argument("--window-hours", type=float, default=24.0, help="the retry window, in compressed hours")
    og.add_argument(
        "--outage",
        action="append",
        metavar="VENDOR=KIND:HOURS",
        help="a vendor's outage (KIND 503, 401 or timeout); repeat for several. "
        "Default: appsflyer=503:6, adroll=401:2, applovin=timeout:1",
    )
    og.add_argument("--probe-seconds", type=int, default=3, help="the circuit's probe interval, in real seconds")
    og.add_argument(
        "--traffic-hours",
        type=float,
        help="how long signed traffic lasts, in compressed hours (default: until an hour after the longest "
        "outage); shorter than the outages leaves the relay in silence after them (the scheduled recovery)",
    )
    og.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    og.set_defaults(func=outage_cmd)

    tr = sub.add_parser("trace", help="what happened to one event: each vendor's requests, answers and outcome")
    tr.add_argument("event_id", help="the event's event_id")
    tr.add_argument(
        "--source", default="default", help="the source that sent it (event ids are per source; default: default)"
    )
    _stack_or_config(tr)
    tr.add_argument("--json", action="store_true", help="the journey as JSON")
    tr.set_defaults(func=trace_cmd)

    rf = sub.add_parser("refused", help="the requests the ingest refused (kept 7 days): why, and which events")
    rf.add_argument(
        "--since", default="24h", help="a duration back from now (30m, 6h, 7d) or an ISO time (default 24h)"
    )
    rf.add_argument("--source", help="only requests that named this source (default: every source)")
    rf.add_argument("--limit", type=int, default=1000, help="at most this many, the newest (default 1000)")
    _stack_or_config(rf)
    rf.add_argument("--json", action="store_true", help="the refused requests as JSON")
    rf.set_defaults(func=refused_cmd)

    rp = sub.add_parser("replay", help="queue archived events again: only to connections that have not delivered them")
    rp.add_argument("--since", required=True, help="accepted at or after this ISO time (UTC unless an offset)")
    rp.add_argument("--until", help="accepted before this ISO time (default: now)")
    rp.add_argument("--source", action="append", help="only this source's events (repeatable; default: all)")
    rp.add_argument("--connection", action="append", help="only to this connection (repeatable): applovin.eu")
    rp.add_argument("--event-id", action="append", help="only this event (repeatable)")
    rp.add_argument("--ids-file", help="only the event ids in this file, one a line")
    rp.add_argument("--again", action="store_true", help="also what was delivered: once more per replay")
    rp.add_argument("--max-age-days", type=int, help="list events older than this instead of sending them")
    rp.add_argument("--rate", type=float, default=50.0, help="at most this many events a second (default 50)")
    rp.add_argument("--checkpoint", help="the file a killed replay resumes from (default .relay/replays/...)")
    rp.add_argument("--dry-run", action="store_true", help="count what would be sent; send nothing")
    rp.add_argument("--json", action="store_true", help="the summary as one JSON object")
    _stack_or_config(rp)
    rp.set_defaults(func=replay_cmd)

    im = sub.add_parser("import", help="backfill: validate a file of events by line, then send them 100 a request")
    im.add_argument("file", help="NDJSON (one canonical event a line) or CSV (a header row; see --map)")
    im.add_argument("--map", action="append", help="CSV: COLUMN=FIELD, a dotted field (repeatable): Email=user.email")
    im.add_argument("--set", action="append", help="FIELD=VALUE for every event (repeatable): source=web")
    im.add_argument("--source", help="sign as this source (default: the configuration's only one, else default)")
    im.add_argument("--url", help="the ingest URL (default: the local stack's)")
    im.add_argument("--rate", type=float, default=100.0, help="at most this many events a second (default 100)")
    im.add_argument("--checkpoint", help="the file a killed import resumes from (default .relay/imports/...)")
    im.add_argument("--dry-run", action="store_true", help="validate every row; send nothing")
    im.add_argument("--json", action="store_true", help="the report as one JSON object")
    im.add_argument("--config", help=f"the relay configuration (default: ./{DEFAULT_CONFIG}, else the example)")
    im.set_defaults(func=import_cmd)

    fg = sub.add_parser("forget", help="erase a person's events: archive, journeys, the ledger's personal fields")
    fg.add_argument("--user-id", action="append", help="the event's user.id (repeatable)")
    fg.add_argument("--email", action="append", help="an email address, hashed here (repeatable)")
    fg.add_argument("--email-sha256", action="append", help="the SHA-256 of a normalised email (repeatable)")
    fg.add_argument("--phone", action="append", help="a phone number, hashed here (repeatable; see --country)")
    fg.add_argument("--phone-sha256", action="append", help="the SHA-256 of a phone's digits (repeatable)")
    fg.add_argument("--country", help="the country of a --phone without its +country code (ISO 3166: US)")
    fg.add_argument("--dry-run", action="store_true", help="find and count; change nothing")
    fg.add_argument("--json", action="store_true", help="the report as one JSON object")
    _stack_or_config(fg)
    fg.set_defaults(func=forget_cmd)

    ui = sub.add_parser("ui", help="the debugger page on 127.0.0.1, against a deployed stack (--stack)")
    _stack_or_config(ui)
    ui.add_argument("--port", type=int, default=8765, help="the local port (default 8765; 0: any free one)")
    ui.set_defaults(func=ui_cmd)

    d = sub.add_parser("dlq", help="list, redrive or purge a vendor's dead-letter queue")
    d_sub = d.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "show what is in the DLQ and why"),
        ("redrive", "move messages back to the queue"),
        ("purge", "delete every message of the DLQ, or those of --event-id"),
    ):
        a = d_sub.add_parser(action, help=text)
        a.add_argument(
            "vendor_word",
            nargs="?",
            choices=VENDORS,
            metavar="VENDOR",
            help=f"the vendor ({', '.join(VENDORS)}), as a word or as --vendor",
        )
        a.add_argument(
            "--vendor",
            choices=VENDORS,
            help="the vendor (list: default every vendor; redrive: this or --connection; purge: required)",
        )
        if action != "purge":
            a.add_argument(
                "--connection", action="append", help="only this connection's letters (repeatable): applovin.eu"
            )
        _stack_or_config(a)
        if action == "list":
            a.add_argument("--json", action="store_true", help="one JSON object per message")
        if action != "list":
            a.add_argument("--event-id", action="append", help="only this event (repeatable); default: all")
        if action == "purge":
            a.add_argument("--yes", action="store_true", help="confirm")
        a.set_defaults(func=dlq_cmd)
    return parser


def _stack_or_config(p: argparse.ArgumentParser) -> None:
    """--stack NAME (a deployed stack, your AWS credentials) or --config (the local stack), and --region."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stack", help="a deployed stack's name (resources from its Outputs)")
    where.add_argument(
        "--config",
        help=f"the local stack's relay configuration (default: ./{DEFAULT_CONFIG}, else the bundled example)",
    )
    p.add_argument("--region", help="AWS region of --stack (default: your AWS configuration)")
    p.add_argument("--endpoint-url", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, out, err))
    except ConfigError as exc:
        print(f"relay: invalid configuration ({exc.source}):", file=err)
        for e in exc.errors:
            print(f"  - {e.field}: {e.message}", file=err)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"relay: {exc}", file=err)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and the like
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
