"""The ``--rules PATH`` / ``--set RULE_ID.PARAM=VALUE`` flags of every command that decides
(backtest, ``python -m queries``, consume, replay, demo; ``--set`` also on
``streaming.rules publish``), defined once."""

from __future__ import annotations

import argparse

from rules.model import RuleSet, rule_set_from_cli

SET_HELP = ("override a rule parameter, weight or the alert threshold (repeatable), e.g. "
            "high_amount.threshold=2500, high_amount.weight=0.5, alert_threshold=2")


def add_rule_arguments(p: argparse.ArgumentParser) -> None:
    """``--rules PATH`` (default: the packaged ``rules/default.toml``) and ``--set``."""
    p.add_argument("--rules", metavar="PATH",
                   help="rule set TOML file (default: the packaged rules/default.toml)")
    add_set_argument(p)


def add_set_argument(p: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    p.add_argument("--set", action="append", default=[], metavar="RULE_ID.PARAM=VALUE",
                   help=help)


def rule_set_from_args(args: argparse.Namespace) -> RuleSet:
    """The rule set ``--rules``/``--set`` name; a problem is a one-line UsageError (exit 2)."""
    return rule_set_from_cli(args.rules, args.set)
