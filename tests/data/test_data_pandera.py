"""pandera schemas on task inputs and outputs: failures name the task, the parameter
and the failing checks, and are raised in the caller."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
import pandera.typing as pt
import pytest
from pandera.typing import Series

import heddle


class Prices(pa.DataFrameModel):
    item: Series[str]
    price: Series[float] = pa.Field(gt=0)


env = heddle.TaskEnvironment(name="pandera")


@env.task
async def cheapest(df: Annotated[pd.DataFrame, Prices]) -> str:
    return str(df.sort_values("price")["item"].iloc[0])


@env.task
async def bad_prices() -> pt.DataFrame[Prices]:
    return pd.DataFrame({"item": ["a", "b"], "price": [1.0, -2.0]})  # type: ignore[return-value]


@env.task
async def call_with(prices: list[float]) -> str:
    return await cheapest(
        pd.DataFrame({"item": [f"i{i}" for i in range(len(prices))], "price": prices})
    )


@env.task
async def consume_bad() -> int:
    df = await bad_prices()
    return len(df)


def test_valid_frame_passes(home: object) -> None:
    assert heddle.run(call_with, [3.0, 1.0]).outputs() == "i1"


def test_invalid_input_names_task_parameter_and_checks(home: object) -> None:
    with pytest.raises(heddle.InputError) as info:
        heddle.run(call_with, [3.0, -1.0, 0.0]).outputs()
    text = str(info.value)
    assert "'pandera.cheapest'" in text and "'df'" in text
    assert "Prices" in text and "column 'price'" in text and "greater_than(0)" in text
    assert "2 failure(s)" in text


def test_invalid_output_is_raised_in_the_caller(home: object) -> None:
    with pytest.raises(heddle.TypeMismatchError) as info:
        heddle.run(consume_bad).outputs()
    text = str(info.value)
    assert "'pandera.bad_prices'" in text and "return value" in text
    assert "column 'price'" in text and "greater_than(0)" in text


def test_schema_object_and_direct_validation_error(home: object) -> None:
    from heddle._types import encode

    schema = pa.DataFrameSchema({"n": pa.Column(int, pa.Check.isin([1, 2]))}, name="Small")
    with pytest.raises(heddle.DataValidationError) as info:
        encode(pd.DataFrame({"n": [1, 5]}), Annotated[pd.DataFrame, schema])
    assert info.value.schema == "Small" and "isin" in info.value.checks[0]
