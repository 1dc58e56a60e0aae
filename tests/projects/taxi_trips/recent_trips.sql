-- bauplan: materialization_strategy=REPLACE
-- The trips of a few days of the synthetic taxi_fhvhv table, the window's start coming
-- from the project's start_trip_date parameter.
SELECT
    pickup_datetime,
    PULocationID,
    trip_miles,
    trip_time,
    base_passenger_fare,
    tips
FROM taxi_fhvhv
WHERE pickup_datetime >= $start_trip_date
AND pickup_datetime < '2023-01-05T00:00:00-05:00'
