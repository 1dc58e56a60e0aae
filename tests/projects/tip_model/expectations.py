"""
Checks of the tip model's outputs: standard expectations, and one written with pandas.
"""

import bauplan
from bauplan.standard_expectations import (
    expect_column_all_unique,
    expect_column_mean_greater_than,
    expect_column_no_nulls,
)


@bauplan.expectation()
@bauplan.python('3.11')
def test_every_trip_has_a_prediction(
        data=bauplan.Model('tip_predictions', columns=['predictions']),
):
    assert expect_column_no_nulls(data, 'predictions'), 'some trips have no prediction'
    return True


@bauplan.expectation()
@bauplan.python('3.11')
def test_predicted_tips_are_positive(
        data=bauplan.Model('tip_predictions', columns=['predictions']),
):
    return expect_column_mean_greater_than(data, 'predictions', 0.0)


@bauplan.expectation()
@bauplan.python('3.11', pip={'pandas': '2.2.0'})
def test_predictions_are_close_to_the_tips(
        data=bauplan.Model('tip_predictions', columns=['tips', 'predictions']),
):
    df = data.to_pandas()
    worst_error = (df['predictions'] - df['tips']).abs().max()
    print(f"the largest error of a prediction is {worst_error}")
    # a NumPy bool, as pandas computes it
    return worst_error < 0.01


@bauplan.expectation()
@bauplan.python('3.11')
def test_one_row_per_distance(
        data=bauplan.Model('tips_by_distance', columns=['trip_miles']),
):
    return expect_column_all_unique(data, 'trip_miles')
