"""
Data quality checks of the taxi pipeline, kept apart from the models as Bauplan's
examples do, written with bauplan's standard expectations.
"""

import bauplan
from bauplan.standard_expectations import (
    expect_column_accepted_values,
    expect_column_all_unique,
    expect_column_mean_greater_than,
    expect_column_no_nulls,
)


@bauplan.expectation()
@bauplan.python('3.11')
def test_every_trip_has_a_borough(
        data=bauplan.Model('trips_with_zones', columns=['Borough', 'Zone']),
):
    column_to_check = 'Borough'
    _is_expectation_correct = expect_column_no_nulls(data, column_to_check)
    assert _is_expectation_correct, (
        f"expectation test failed: we expected {column_to_check} to have no null values"
    )
    return _is_expectation_correct


@bauplan.expectation()
@bauplan.python('3.11')
def test_trips_are_longer_than_the_minimum(
        data=bauplan.Model('normalized_trips', columns=['trip_miles']),
        min_trip_miles=bauplan.Parameter('min_trip_miles'),
):
    return expect_column_mean_greater_than(data, 'trip_miles', min_trip_miles)


@bauplan.expectation()
@bauplan.python('3.11')
def test_one_row_per_zone(
        data=bauplan.Model('zone_trip_stats'),
):
    return expect_column_all_unique(data, 'Zone')


@bauplan.expectation()
@bauplan.python('3.11')
def test_boroughs_are_known(
        data=bauplan.Model('borough_tips', columns=['Borough']),
):
    boroughs = ['Bronx', 'Brooklyn', 'Manhattan', 'Queens', 'Staten Island']
    return expect_column_accepted_values(data, 'Borough', boroughs)
