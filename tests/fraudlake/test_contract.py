from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest

from fraudlake import contract
from lake.layout import partition_dir


def _frame(**overrides) -> pl.DataFrame:
    data = {
        "transaction_id": ["t1"],
        "user_id": [1],
        "ts": [datetime(2024, 3, 1, 12, tzinfo=UTC)],
        "amount": [Decimal("12.34")],
        "lat": [52.5],
        "lon": [13.4],
        "utc_offset_min": [60],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_arrow_schema_has_exact_core_types():
    schema = contract.arrow_schema()
    assert schema.field("amount").type == pa.decimal128(18, 2)
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("utc_offset_min").type == pa.int32()
    assert schema.field("user_id").type == pa.int64()
    assert schema.names[: len(contract.CORE_SCHEMA)] == list(contract.CORE_SCHEMA)


def test_partition_dir_is_zero_padded():
    assert partition_dir(2024, 3) == "year=2024/month=03"


def test_check_columns_names_missing_column():
    with pytest.raises(contract.ContractError, match="lat"):
        contract.check_columns(_frame().drop("lat").schema)


def test_check_columns_rejects_float_amount():
    with pytest.raises(contract.ContractError, match="amount"):
        contract.check_columns(_frame(amount=[12.34]).schema)


def test_check_columns_rejects_naive_timestamp():
    with pytest.raises(contract.ContractError, match="ts"):
        contract.check_columns(_frame(ts=[datetime(2024, 3, 1)]).schema)


def test_conform_casts_to_contract_types_and_keeps_labels_optional():
    df = contract.conform(_frame(utc_offset_min=[60], user_id=[7]))
    assert df.schema["utc_offset_min"] == pl.Int32()
    assert df.schema["amount"] == pl.Decimal(18, 2)
    assert df["amount"][0] == Decimal("12.34")
    assert "is_fraud" not in df.columns
