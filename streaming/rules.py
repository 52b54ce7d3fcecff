"""Publish and inspect rule sets on the control topic: python -m streaming.rules.

  publish PATH [--shadow] [--set RULE_ID.PARAM=VALUE]   validate a rule set and make it the
                                                        active (or shadow) set of every consumer
  unshadow                                              stop the shadow set
  list                                                  the active and shadow sets, and where
                                                        each consumer partition switched
  show [active|shadow|ID]                               one set, resolved, as JSON
  compare [--lake DIR] [--json]                         the live shadow comparison from the
                                                        lake: alerts the shadow set would add
                                                        or remove, precision where labelled

Consumers apply a newly published set at their next micro-batch, per partition, and record
the first offset it decided (``switch`` records on the same topic), so a replay decides every
event with the set that decided it live.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from fraudlake.cli import (
    ArgumentParser,
    EnvironmentFailure,
    UsageError,
    float_range_arg,
    run,
)
from fraudlake.settings import Settings
from rules.arguments import add_set_argument
from rules.model import rule_set_from_cli
from streaming import rules_control as rc
from streaming.kafka_io import check_kafka


def build_parser() -> ArgumentParser:
    settings = Settings.from_env()
    p = ArgumentParser(prog="python -m streaming.rules",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=settings.kafka_bootstrap_servers,
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--topic", default=settings.rules_topic,
                   help=f"control topic (env KAFKA_RULES_TOPIC; default {rc.DEFAULT_TOPIC})")
    p.add_argument("--timeout", type=float_range_arg(0, 3600, low_open=True),
                   default=15.0,
                   help="seconds to wait for the broker (default 15)")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="validate a rule set file and publish it")
    pub.add_argument("path", help="the rule set TOML file")
    pub.add_argument("--shadow", action="store_true",
                     help="publish as the shadow set (evaluated beside the active one, never "
                          "alerting) instead of the active set")
    add_set_argument(pub, "override a parameter before publishing (repeatable)")
    sub.add_parser("unshadow", help="stop evaluating a shadow set")
    sub.add_parser("list", help="the active and shadow sets and the recorded switch points")
    show = sub.add_parser("show", help="one rule set, resolved, as JSON")
    show.add_argument("which", nargs="?", default="active",
                      help="active (default), shadow, or a rule-set id")
    cmp = sub.add_parser("compare", help="the shadow set against the active one, from the "
                                         "lake (no Kafka needed)")
    cmp.add_argument("--lake", type=Path, default=settings.lake_dir,
                     help="lake root (env LAKE_DIR; default storage/lake)")
    cmp.add_argument("--json", action="store_true", help="one JSON object per set pair")
    return p


def _compare(args) -> int:
    from streaming.shadow import compare, format_comparison, scan_lake

    if not args.lake.is_dir():
        raise UsageError(f"--lake {args.lake}: no such folder")
    try:
        table = compare(scan_lake(args.lake))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UsageError(f"--lake {args.lake}: cannot read the lake: "
                         f"{str(exc).strip().splitlines()[0]}") from None
    if args.json:
        for row in table.iter_rows(named=True):
            print(json.dumps(row))
    else:
        print(format_comparison(table))
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    if args.command == "publish":  # validate before touching the broker
        rule_set = rule_set_from_cli(args.path, args.set)
    if not args.bootstrap:
        raise UsageError("no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout must be within (0, 3600], got {args.timeout}")
    extra = {**Settings.from_env().kafka_extra, "log_level": "0"}
    try:  # a bad client setting: exit 2; no broker within --timeout: one line, exit 1
        check_kafka(args.bootstrap, Settings.from_env().kafka_extra, args.timeout)
    except EnvironmentFailure as exc:
        raise EnvironmentFailure(f"cannot use Kafka at {args.bootstrap} (topic {args.topic}): "
                                 f"{str(exc).partition(': ')[2]}") from None
    try:
        return _command(args, extra, rule_set if args.command == "publish" else None)
    except (EnvironmentFailure, UsageError):
        raise
    except Exception as exc:  # librdkafka / broker errors: the environment failed
        raise EnvironmentFailure(f"cannot use Kafka at {args.bootstrap} "
                                 f"(topic {args.topic}): {exc}") from None


def _command(args, extra: dict, rule_set) -> int:
    if args.command == "publish":
        role = "shadow" if args.shadow else "active"
        rc.publish(args.bootstrap, args.topic, rule_set, role, extra)
        print(f"published {rule_set.id} as the {role} rule set ({len(rule_set.rules)} rules, "
              f"from {rule_set.source})")
        return 0
    if args.command == "unshadow":
        rc.clear(args.bootstrap, args.topic, "shadow", extra)
        print("shadow rule set cleared")
        return 0
    state = rc.read_control(args.bootstrap, args.topic, extra, args.timeout)
    if args.command == "list":
        print(format_state(state))
        return 0
    which = args.which
    rs = state.current(which) if which in rc.ROLES else state.sets.get(which)
    if rs is None:
        raise UsageError(f"no rule set {which!r} on {args.topic} (known: "
                         f"{', '.join(sorted(state.sets)) or 'none'})")
    print(json.dumps({"id": rs.id, **rs.to_dict()}, indent=2))
    return 0


def format_state(state: rc.ControlState) -> str:
    lines = []
    for role in rc.ROLES:
        p = state.pointers.get(role)
        rs = state.current(role)
        if p is None or rs is None:
            lines.append(f"{role:7} (none)")
            continue
        lines.append(f"{role:7} {rs.id}  {len(rs.rules)} rules  published {p.published_at}")
    if state.switches:
        lines.append("switches (topic partition role: first offset → rule set):")
        for s in sorted(state.switches, key=lambda s: (s.topic, s.partition, s.offset, s.role)):
            lines.append(f"  {s.topic} p{s.partition} {s.role}: {s.offset} → {s.id or '(none)'}"
                         f"  at {s.at}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
