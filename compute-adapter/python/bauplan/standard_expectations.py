"""Ready-made data checks for expectation functions, computed with pyarrow.

Each function takes the table first (a `pyarrow.Table`, a
`pyarrow.RecordBatch`, or anything `pyarrow.table()` accepts, such as a dict
of lists), then a column name and the check's arguments, with the same names
and order as Bauplan's `bauplan.standard_expectations`.  Each returns a
Python `bool`, so that the expectation can return it or assert it::

    @bauplan.expectation()
    @bauplan.python("3.11")
    def test_ids(data=bauplan.Model("orders", columns=["id"])):
        return expect_column_all_unique(data, "id")

Naming a column the table lacks raises `KeyError`; a mean of a column that
has none (e.g. strings) raises `TypeError`.

Nulls: null checks count Arrow nulls (a float NaN is a value, not a null).
Means ignore nulls, and a column without any non-null value has no mean, so
every mean comparison on it is False.  Uniqueness treats null as a value
(two nulls are duplicates), as Bauplan does.  A null is an accepted value
only if `None` is among the accepted values.  A row satisfies a
concatenation check when target and concatenation are equal, or both null.
Checks over all rows are true on an empty table, except those that need a
value to exist (`expect_column_some_null`, `expect_column_not_unique`, the
mean comparisons).

Besides the functions of Bauplan's SDK module, this module provides the
ones Bauplan's documentation names without shipping them:
`expect_column_all_nulls`, `expect_column_values_to_be_unique`,
`expect_column_to_exist`, `expect_column_values_to_be_between` and
`expect_column_mean_to_be_between` (inclusive bounds, `None` for no bound).
"""

import pyarrow
import pyarrow.compute as pc

__all__ = [
    "expect_column_no_nulls",
    "expect_column_some_null",
    "expect_column_all_null",
    "expect_column_all_nulls",
    "expect_column_all_unique",
    "expect_column_values_to_be_unique",
    "expect_column_not_unique",
    "expect_column_accepted_values",
    "expect_column_mean_greater_than",
    "expect_column_mean_greater_or_equal_than",
    "expect_column_mean_smaller_than",
    "expect_column_mean_smaller_or_equal_than",
    "expect_column_mean_to_be_between",
    "expect_column_values_to_be_between",
    "expect_column_equal_concatenation",
    "expect_column_to_exist",
]


# --------------------------------------------------------------- helpers --

def _as_table(table) -> pyarrow.Table:
    """`table` as a pyarrow.Table, converting what pyarrow knows how to convert."""
    if isinstance(table, pyarrow.Table):
        return table
    if isinstance(table, pyarrow.RecordBatch):
        return pyarrow.Table.from_batches([table])
    return pyarrow.table(table)


def _column(table, column_name: str) -> pyarrow.ChunkedArray:
    """The column `column_name` of `table`; KeyError naming the columns if absent."""
    table = _as_table(table)
    if column_name not in table.column_names:
        raise KeyError(f"no column {column_name!r} in the table; "
                       f"its columns are {table.column_names}")
    return table.column(column_name)


def _mean(table, column_name: str):
    """The mean of the non-null values of a column, or None when it has none."""
    column = _column(table, column_name)
    try:
        return pc.mean(column).as_py()
    except pyarrow.ArrowNotImplementedError as exc:
        raise TypeError(f"column {column_name!r} of type {column.type} has no mean") from exc


def _all(mask) -> bool:
    """Whether every value of a boolean array is true (true when it is empty; a null is not true)."""
    return pc.all(mask, skip_nulls=False, min_count=0).as_py() is True


def _as_text(column: pyarrow.ChunkedArray) -> pyarrow.ChunkedArray:
    """A column converted to large strings (numbers, booleans... as text)."""
    return column if column.type == pyarrow.large_string() else pc.cast(column, pyarrow.large_string())


# ----------------------------------------------------------------- nulls --

def expect_column_no_nulls(table, column_name: str) -> bool:
    """Expect the column to hold no null value."""
    return _column(table, column_name).null_count == 0


def expect_column_some_null(table, column_name: str) -> bool:
    """Expect the column to hold at least one null value."""
    return _column(table, column_name).null_count > 0


def expect_column_all_null(table, column_name: str) -> bool:
    """Expect every value of the column to be null (true on an empty table)."""
    column = _column(table, column_name)
    return column.null_count == len(column)


def expect_column_all_nulls(table, column_name: str) -> bool:
    """The same as `expect_column_all_null` (the name Bauplan's docs also use)."""
    return expect_column_all_null(table, column_name)


# ------------------------------------------------------------ uniqueness --

def _distinct_count(column: pyarrow.ChunkedArray) -> int:
    """How many different values a column holds, null counting as one value."""
    return pc.count_distinct(column, mode="all").as_py()


def expect_column_all_unique(table, column_name: str) -> bool:
    """Expect no value of the column to appear twice (two nulls are duplicates)."""
    column = _column(table, column_name)
    return _distinct_count(column) == len(column)


def expect_column_values_to_be_unique(table, column_name: str) -> bool:
    """The same as `expect_column_all_unique` (a name Bauplan's docs use)."""
    return expect_column_all_unique(table, column_name)


def expect_column_not_unique(table, column_name: str) -> bool:
    """Expect at least one value of the column to appear more than once."""
    column = _column(table, column_name)
    return _distinct_count(column) < len(column)


# ---------------------------------------------------------------- values --

def expect_column_accepted_values(table, column_name: str, accepted_values: list) -> bool:
    """Expect every value of the column to be one of `accepted_values`.

    A null is accepted only when `None` is in `accepted_values`.  Values
    that cannot have the column's type (e.g. "a" for an integer column)
    simply match nothing.
    """
    column = _column(table, column_name)
    accepted_values = list(accepted_values)
    try:
        value_set = pyarrow.array(accepted_values, type=column.type)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError,
            TypeError, ValueError, OverflowError):
        # Mixed or foreign values: compare in Python, one value at a time.
        return all(any(value == accepted for accepted in accepted_values)
                   for value in column.to_pylist())
    return _all(pc.is_in(column, value_set=value_set))


def expect_column_values_to_be_between(table, column_name: str, min_value=None, max_value=None) -> bool:
    """Expect every non-null value of the column to lie in [min_value, max_value].

    Both bounds are inclusive; `None` leaves that side unbounded, but at
    least one bound is required.  Nulls are ignored.
    """
    if min_value is None and max_value is None:
        raise ValueError("give min_value, max_value or both")
    extremes = pc.min_max(_column(table, column_name)).as_py()
    if extremes["min"] is None:  # no non-null value
        return True
    return ((min_value is None or extremes["min"] >= min_value)
            and (max_value is None or extremes["max"] <= max_value))


# ----------------------------------------------------------------- means --

def expect_column_mean_greater_than(table, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be greater than `value`."""
    mean = _mean(table, column_name)
    return mean is not None and mean > value


def expect_column_mean_greater_or_equal_than(table, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be at least `value`."""
    mean = _mean(table, column_name)
    return mean is not None and mean >= value


def expect_column_mean_smaller_than(table, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be smaller than `value`."""
    mean = _mean(table, column_name)
    return mean is not None and mean < value


def expect_column_mean_smaller_or_equal_than(table, column_name: str, value: float) -> bool:
    """Expect the mean of the column's non-null values to be at most `value`."""
    mean = _mean(table, column_name)
    return mean is not None and mean <= value


def expect_column_mean_to_be_between(table, column_name: str, min_value=None, max_value=None) -> bool:
    """Expect the mean of the column's non-null values to lie in [min_value, max_value].

    Both bounds are inclusive; `None` leaves that side unbounded, but at
    least one bound is required.
    """
    if min_value is None and max_value is None:
        raise ValueError("give min_value, max_value or both")
    mean = _mean(table, column_name)
    return (mean is not None and (min_value is None or mean >= min_value)
            and (max_value is None or mean <= max_value))


# -------------------------------------------------------------- structure --

def expect_column_equal_concatenation(table, target_column: str, columns: list, separator: str = "") -> bool:
    """Expect `target_column` to equal the other `columns` joined with `separator`.

    Columns that are not strings are converted to text first (1 -> "1",
    True -> "true").  A concatenation involving a null is null; a row
    passes when target and concatenation are equal or both null.
    """
    columns = list(columns)
    if not columns:
        raise ValueError("columns must name at least one column to concatenate")
    table = _as_table(table)
    parts = [_as_text(_column(table, name)) for name in columns]
    target = _as_text(_column(table, target_column))
    joined = pc.binary_join_element_wise(*parts, pyarrow.scalar(separator, pyarrow.large_string()))
    equal = pc.fill_null(pc.equal(joined, target), False)
    both_null = pc.and_(pc.is_null(joined), pc.is_null(target))
    return _all(pc.or_(equal, both_null))


def expect_column_to_exist(table, column_name: str) -> bool:
    """Expect the table to have a column named `column_name`."""
    return column_name in _as_table(table).column_names
