"""
An e-commerce pipeline in the style of Bauplan's examples: clean_events.sql cleans the
raw events of the retail namespace, purchases.sql keeps the purchases, and the functions
below compute session metrics (DuckDB), revenue per brand (Polars), views per product
(plain Python, returned as a list of dicts) and the activity per hour (a DuckDB relation,
returned as it is).
"""

import bauplan


@bauplan.python('3.11', pip={'duckdb': '1.0.0'})
@bauplan.model(
    materialization_strategy='REPLACE',
    columns=['user_session', 'events', 'views', 'revenue'],
)
def session_metrics(
        clean_events=bauplan.Model(
            'clean_events',
            columns=['user_session', 'event_type', 'price'],
        ),
):
    import duckdb

    con = duckdb.connect()
    query = """
    SELECT
        user_session,
        COUNT(*) AS events,
        SUM(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS views,
        SUM(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END) AS revenue
    FROM clean_events
    GROUP BY user_session
    ORDER BY user_session
    """
    return con.execute(query).arrow()


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'polars': '1.38.1'})
def brand_revenue(
        purchases=bauplan.Model('purchases', columns=['brand', 'price']),
):
    import polars as pl

    df = pl.from_arrow(purchases)
    return (
        df.group_by('brand')
        .agg(pl.len().alias('orders'), pl.col('price').sum().alias('revenue'))
        .sort('brand')
    )


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11')
def product_views(
        views=bauplan.Model(
            'clean_events',
            columns=['product_id', 'event_type'],
            filter="event_type = 'view'",
        ),
):
    from collections import Counter

    counts = Counter(views['product_id'].to_pylist())
    # a list of dicts, one per row
    return [{'product_id': product, 'views': n} for product, n in sorted(counts.items())]


@bauplan.model(materialization_strategy='REPLACE')
@bauplan.python('3.11', pip={'duckdb': '1.1.3'})
def hourly_activity(
        clean_events=bauplan.Model('clean_events', columns=['event_hour', 'event_type']),
):
    import duckdb

    # the relation itself, which hands its rows over through __arrow_c_stream__
    return duckdb.sql("""
        SELECT
            event_hour,
            COUNT(*) AS events,
            COUNT(*) FILTER (WHERE event_type = 'purchase') AS purchases
        FROM clean_events
        GROUP BY event_hour
        ORDER BY event_hour
    """)
