"""
A small machine learning pipeline in the style of Bauplan's examples: select the trips
worth learning from (pandas), scale their features (scikit-learn), fit a linear
regression of the tip and write its predictions (scikit-learn), then summarize the
predictions per distance with Polars.
"""

import bauplan


@bauplan.model()
@bauplan.python('3.11', pip={'pandas': '2.2.0'})
def tip_training_trips(
        data=bauplan.Model(
            'taxi_fhvhv',
            columns=[
                'pickup_datetime',
                'trip_miles',
                'trip_time',
                'base_passenger_fare',
                'tips',
            ],
            filter="trip_miles > 1.0 AND base_passenger_fare >= $min_fare",
        ),
):
    print(f"\nthe filtered taxi_fhvhv table has {data.num_rows} rows\n")

    # input data is always an Arrow table: convert it explicitly to use pandas
    df = data.to_pandas()
    # only the trips that were tipped teach the model anything
    df = df[df['tips'] > 0.0]

    return df


@bauplan.model(materialize=False)
@bauplan.python('3.11', pip={'pandas': '1.5.3', 'scikit-learn': '1.3.2'})
def training_dataset(
        data=bauplan.Model(
            'tip_training_trips',
            columns=['trip_miles', 'trip_time', 'base_passenger_fare', 'tips'],
        ),
):
    import numpy as np
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    df = data.to_pandas()
    df = df.dropna()
    # log-transform the distance, then bring every feature to the same scale
    df['log_trip_miles'] = np.log10(df['trip_miles'])
    features = df[['log_trip_miles', 'base_passenger_fare', 'trip_time']]
    scaler = StandardScaler()
    scaled_df = pd.DataFrame(scaler.fit_transform(features), columns=features.columns)
    scaled_df['trip_miles'] = df['trip_miles'].values
    scaled_df['tips'] = df['tips'].values

    print(f"The training dataset has {len(scaled_df)} rows")
    return scaled_df


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'pandas': '2.2.0', 'scikit-learn': '1.3.2'})
def tip_predictions(
        data=bauplan.Model('training_dataset'),
):
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    df = data.to_pandas()
    feature_columns = ['log_trip_miles', 'base_passenger_fare', 'trip_time']
    train_set, validation_set = train_test_split(df, train_size=0.8, random_state=42)
    print(f"training on {len(train_set)} rows, validating on {len(validation_set)} rows")

    reg = LinearRegression().fit(train_set[feature_columns], train_set['tips'])
    print("R^2 on the validation set: {}".format(
        reg.score(validation_set[feature_columns], validation_set['tips'])))

    # predict the tip of every trip of the dataset
    prediction_df = df[['trip_miles', 'base_passenger_fare', 'tips']].copy()
    prediction_df['predictions'] = reg.predict(df[feature_columns])
    return prediction_df


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'polars': '1.38.1'})
def tips_by_distance(
        data=bauplan.Model(
            'tip_predictions',
            columns=['trip_miles', 'tips', 'predictions'],
        ),
):
    import polars as pl

    df = pl.from_arrow(data)
    result = (
        df.group_by('trip_miles')
        .agg(
            pl.len().alias('trips'),
            pl.col('tips').mean().alias('avg_tip'),
            pl.col('predictions').mean().alias('avg_predicted_tip'),
        )
        .sort('trip_miles')
    )

    # a Polars DataFrame, returned as it is
    return result
