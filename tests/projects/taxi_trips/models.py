"""
A taxi pipeline in the style of Bauplan's examples, over synthetic tables.

recent_trips.sql keeps a window of trips; the functions below join them with the zones
(PyArrow), clean them (pandas and NumPy), then aggregate them per zone and per borough
(DuckDB, queried directly on the Arrow tables the functions receive).
"""

import bauplan


@bauplan.model()
@bauplan.python('3.11')
def trips_with_zones(
        trips=bauplan.Model(
            'recent_trips',
            columns=[
                'pickup_datetime',
                'PULocationID',
                'trip_miles',
                'trip_time',
                'base_passenger_fare',
                'tips',
            ],
        ),
        zones=bauplan.Model(
            'taxi_zones',
            columns=['LocationID', 'Borough', 'Zone'],
        ),
):
    # the inputs are Arrow tables: join them with PyArrow, no conversion needed
    return trips.join(zones, 'PULocationID', 'LocationID').combine_chunks()


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'pandas': '1.5.3', 'numpy': '1.23.2'})
def normalized_trips(
        data=bauplan.Model('trips_with_zones'),
        min_trip_miles=bauplan.Parameter('min_trip_miles'),
):
    import math

    import numpy as np
    import pandas as pd

    size_in_mb = round(data.nbytes / math.pow(1024, 2), 3)
    print(f"trips_with_zones is {size_in_mb} MB and has {data.num_rows} rows")

    df = data.to_pandas()
    # keep the trips longer than the parameter says, and only the ones since 2022
    time_filter = pd.to_datetime('2022-01-01').tz_localize('UTC')
    df = df[df['pickup_datetime'] >= time_filter]
    df = df[df['trip_miles'] > min_trip_miles]
    df = df[df['trip_miles'] < 200.0]
    df['log_trip_miles'] = np.log10(df['trip_miles'])

    # a pandas DataFrame, its index made of the rows the filters kept
    return df


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'duckdb': '0.10.3'})
def zone_trip_stats(
        normalized_trips=bauplan.Model('normalized_trips'),
):
    import duckdb

    # DuckDB finds the Arrow table by the name of the argument
    sql_query = """
    SELECT
        Borough,
        Zone,
        COUNT(*) AS trips,
        AVG(trip_miles) AS avg_trip_miles,
        SUM(tips) AS total_tips
    FROM normalized_trips
    GROUP BY Borough, Zone
    ORDER BY Zone
    """
    return duckdb.sql(sql_query).arrow()


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'duckdb': '1.0.0'})
def borough_tips(
        zone_trip_stats=bauplan.Model(
            'zone_trip_stats',
            columns=['Borough', 'trips', 'total_tips'],
        ),
):
    import duckdb

    con = duckdb.connect()
    query = """
    SELECT
        Borough,
        SUM(trips) AS trips,
        SUM(total_tips) AS total_tips
    FROM zone_trip_stats
    GROUP BY Borough
    ORDER BY Borough
    """
    return con.execute(query).arrow()
