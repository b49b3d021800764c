"""The ``custody`` command: ``gate``, ``flush``, ``status`` and ``verify`` (:mod:`custody.verify`).

Configuration as for the library: ``--url`` / ``--token`` / ``--namespace`` or ``CUSTODY_URL``,
``CUSTODY_TOKEN``, ``CUSTODY_NAMESPACE``, ``CUSTODY_SPOOL_DIR``.

Exit codes: 0 success (gate: a live approval exists); 1 the answer is no (gate: not approved;
flush: events remain; status: server unreachable or token refused); 2 the question could not be
answered (bad configuration, server unreachable or without the feature, authentication).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

from custody._version import __version__
from custody.config import Config
from custody.errors import CustodyError, FeatureUnavailable, HTTPError, ServerUnreachable


def _config(args: argparse.Namespace) -> Config:
    return Config.resolve(
        url=args.url, token=args.token, namespace=getattr(args, "namespace", None), spool_dir=args.spool_dir
    )


def _transport(config: Config, timeout: Optional[float] = None) -> Any:
    from custody.transport import Transport

    return Transport(config.base_url, config.token, timeout or config.timeout)


def cmd_gate(args: argparse.Namespace) -> int:
    from custody.client import Client
    from custody.governance import wait_gate

    config = _config(args).with_(disabled=True)  # no sender: the gate only reads
    client = Client(config)
    try:
        result = wait_gate(
            client, args.model, args.version, args.env, args.namespace, wait=args.wait, interval=args.interval
        )
    except FeatureUnavailable as exc:
        print(f"custody gate: cannot check: {exc}", file=sys.stderr)
        return 2
    except (HTTPError, ServerUnreachable) as exc:
        print(f"custody gate: cannot check: {exc}", file=sys.stderr)
        return 2
    verdict = "PASS" if result.approved else "BLOCKED"
    print(f"{verdict}: {args.model} {args.version} -> {args.env}: {result.reason}")
    return 0 if result.approved else 1


def cmd_flush(args: argparse.Namespace) -> int:
    from custody.sender import BatchSizer, replay

    config = _config(args)
    transport = _transport(config)
    started = time.monotonic()
    sizer = BatchSizer(config.max_batch_events)
    total = None
    try:
        while True:  # a slow server times out big batches: go on with smaller ones
            result = replay(config, transport, deadline=started + args.timeout, sizer=sizer)
            if total is None:
                total = result
            else:
                total.sent += result.sent
                total.duplicates += result.duplicates
                total.rejected += result.rejected
                total.segments += result.segments
                total.outcome = result.outcome
            timed_out = result.outcome is not None and result.outcome.timed_out
            if not timed_out or time.monotonic() >= started + args.timeout:
                break
    finally:
        transport.close()
    result = total
    from custody.spool import describe

    left = describe(config.spool_path)
    took = time.monotonic() - started
    print(
        f"sent {result.sent} events from {result.segments} spool file(s) to {config.base_url} in {took:.1f} s"
        f" ({result.duplicates} already known, {result.rejected} rejected)"
    )
    if result.outcome is not None and result.outcome.state != "ok":
        print(f"stopped: {result.outcome.message}", file=sys.stderr)
    if left["in_use"]:
        print(f"{left['in_use']} spool file(s) belong to running processes and were left to them")
    pending = left["pending_events"]
    if pending:
        print(f"{pending} events remain in {config.spool_path}", file=sys.stderr)
        return 1
    return 0


def _probe(config: Config) -> Dict[str, Any]:
    transport = _transport(config, timeout=5.0)
    out: Dict[str, Any] = {"reachable": False}
    try:
        started = time.monotonic()
        response = transport.request("GET", "/healthz", auth=False)
        out["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        out["reachable"] = response.status == 200
        out["health"] = response.error_fields() if response.body else {}
        if not config.token:
            out["token"] = "not set (CUSTODY_TOKEN)"
        else:
            response = transport.request("GET", "/api/v1/namespaces?limit=1")
            out["token"] = {
                200: "accepted",
                401: "REFUSED (401): invalid or revoked",
                403: "accepted (this token may not read namespaces)",
                404: "not checked (this server has no read API)",
            }.get(response.status, f"unknown (HTTP {response.status})")
    except ServerUnreachable as exc:
        out["error"] = str(exc)
    finally:
        transport.close()
    return out


def cmd_status(args: argparse.Namespace) -> int:
    from custody.spool import describe

    config = _config(args)
    server = _probe(config)
    spooled = describe(config.spool_path)
    report = {
        "version": __version__,
        "url": config.base_url,
        "namespace": config.namespace,
        "disabled": config.disabled,
        "server": server,
        "spool": spooled,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lines: List[str] = [
            f"custody {__version__}",
            f"server     {config.base_url}  "
            + (
                f"reachable ({server.get('latency_ms')} ms)"
                if server["reachable"]
                else f"UNREACHABLE {server.get('error', '')}"
            ),
            f"token      {server.get('token', 'not checked')}",
            f"namespace  {config.namespace}" + ("  (CUSTODY_DISABLED: recording is off)" if config.disabled else ""),
            f"spool      {spooled['directory']}",
            f"           {spooled['pending_events']} events waiting ({spooled['pending_bytes']} bytes) in "
            f"{spooled['segments']} file(s), {spooled['in_use']} in use by running processes",
        ]
        if spooled["rejected_events"]:
            lines.append(f"           {spooled['rejected_events']} events rejected by the server (rejected.jsonl)")
        print("\n".join(lines))
    refused = str(server.get("token", "")).startswith("REFUSED")
    return 0 if server["reachable"] and not refused else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from custody.verify import run

    return run(args.export, args.public_key, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="custody", description="Custody SDK command line.")
    parser.add_argument("--version", action="version", version=f"custody {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server URL (default: CUSTODY_URL or http://127.0.0.1:8000)")
    common.add_argument("--token", help="API token (default: CUSTODY_TOKEN; prefer the variable)")
    common.add_argument("--spool-dir", help="spool directory (default: CUSTODY_SPOOL_DIR or ~/.cache/custody)")
    sub = parser.add_subparsers(dest="command", required=True)

    gate = sub.add_parser(
        "gate", parents=[common], help="exit 0 only if the model version has a live approval for the environment"
    )
    gate.add_argument("--model", required=True)
    gate.add_argument("--version", required=True, dest="version")
    gate.add_argument("--env", required=True, help="target environment, e.g. production")
    gate.add_argument("--namespace", help="namespace of the registered model (default: CUSTODY_NAMESPACE)")
    gate.add_argument("--wait", type=float, default=0.0, help="poll up to this many seconds for the approval")
    gate.add_argument("--interval", type=float, default=10.0, help="seconds between polls with --wait")
    gate.set_defaults(func=cmd_gate)

    flush = sub.add_parser("flush", parents=[common], help="send events left in the spool by earlier processes")
    flush.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    flush.set_defaults(func=cmd_flush)

    status = sub.add_parser("status", parents=[common], help="server reachability, token, spool size")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    verify = sub.add_parser(
        "verify", help="verify an audit-trail export offline (exit 0 verified, 1 not, 2 unusable input)"
    )
    verify.add_argument("export", help="the JSON Lines export (GET /api/v1/audit/?format=jsonl); '-' for stdin")
    verify.add_argument("--public-key", help="PEM file of the server's public key(s) (GET /api/v1/audit/public-key)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CustodyError as exc:
        print(f"custody {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
