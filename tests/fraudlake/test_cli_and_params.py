import argparse
from decimal import Decimal

import pytest

from fraudlake.cli import ArgumentParser, UsageError, count_arg, run
from fraudlake.settings import Settings
from queries.params import RuleParams, names


@pytest.mark.parametrize("text", ["47e6", "47000000", "47_000_000", "4.7e7"])
def test_count_arg_accepts_all_spellings(text):
    assert count_arg(text) == 47_000_000


@pytest.mark.parametrize("text", ["-5", "abc", "1.5", "", "1e"])
def test_count_arg_rejects_bad_counts(text):
    with pytest.raises(argparse.ArgumentTypeError):
        count_arg(text)


def test_parser_error_is_one_line_exit_2(capsys):
    parser = ArgumentParser(prog="x")
    parser.add_argument("--rows", type=count_arg, required=True)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--rows", "abc"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "abc" in err


def test_run_turns_usage_error_into_exit_2(capsys):
    def main(argv):
        raise UsageError("no such file: x.parquet")

    assert run(main, []) == 2
    assert capsys.readouterr().err.strip().endswith("no such file: x.parquet")


def test_params_overrides_are_typed_and_validated():
    p = RuleParams().with_overrides(["high_amount.threshold=2500", "high_frequency.count=3"])
    assert p.high_amount_threshold == Decimal("2500.00")
    assert p.high_frequency_count == 3
    assert RuleParams().sql_params()["geo_mismatch_earth_radius_km"] == 6371.0
    with pytest.raises(ValueError, match="unknown parameter"):
        RuleParams().with_overrides(["nope.x=1"])
    with pytest.raises(ValueError, match="bad value"):
        RuleParams().with_overrides(["high_frequency.count=many"])
    with pytest.raises(ValueError, match="count"):
        RuleParams().with_overrides(["high_frequency.count=0"])
    assert "unusual_hour.start_hour" in names()


def test_settings_from_env_embedded_by_default_and_hides_secrets():
    assert Settings.from_env({}).embedded
    s = Settings.from_env({
        "MONGO_URI": "mongodb://u:secret@h/", "KAFKA_BOOTSTRAP_SERVERS": "h:9092",
        "KAFKA_SASL_PASSWORD": "pw",
    })
    assert not s.embedded
    assert s.kafka_extra == {"sasl.password": "pw"}
    assert "secret" not in repr(s) and "pw" not in repr(s)
