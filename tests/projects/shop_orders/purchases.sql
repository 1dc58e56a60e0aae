-- bauplan: materialization_strategy = NONE
SELECT
    user_session,
    event_hour,
    product_id,
    brand,
    price
FROM clean_events
WHERE event_type = 'purchase'
