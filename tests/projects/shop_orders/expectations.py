"""
Checks of the e-commerce pipeline. test_average_price_is_plausible returns its verdict
instead of asserting it, so that with a low max_avg_price it fails as a warning, or as a
failed run under --strict.
"""

import bauplan
from bauplan.standard_expectations import (
    expect_column_accepted_values,
    expect_column_mean_smaller_than,
    expect_column_no_nulls,
)


@bauplan.expectation()
@bauplan.python('3.11', pip={'duckdb': '1.0.0'})
def test_sessions_are_unique(
        sessions=bauplan.Model('session_metrics'),
):
    import duckdb

    con = duckdb.connect()
    duplicates = """
        SELECT user_session, COUNT(*)
        FROM sessions
        GROUP BY user_session
        HAVING COUNT(*) > 1
    """
    found = con.execute(duplicates).arrow()
    assert expect_column_no_nulls(sessions, 'user_session')
    assert found.num_rows == 0, f"{found.num_rows} sessions appear more than once"
    return True


@bauplan.expectation()
@bauplan.python('3.11')
def test_average_price_is_plausible(
        data=bauplan.Model('clean_events', columns=['price']),
        max_avg_price=bauplan.Parameter('max_avg_price'),
):
    return expect_column_mean_smaller_than(data, 'price', max_avg_price)


@bauplan.expectation()
@bauplan.python('3.11')
def test_brands_are_known(
        data=bauplan.Model('brand_revenue', columns=['brand']),
):
    return expect_column_accepted_values(data, 'brand', ['acme', 'globex', 'initech'])
