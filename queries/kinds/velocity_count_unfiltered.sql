-- velocity_count, the common case without scope or max_amount (every event matches): the same
-- decision as velocity_count.sql with a plain LAG, which is cheaper than LAG ... IGNORE NULLS.
-- {col} = at least $count events e' <= e of the user, in (ts, transaction_id) order, have
-- e'.ts >= e.ts - $window_seconds (e included): the event ($count - 1) places earlier exists and
-- lies in the window. ($max_amount is unused here; it is NULL for this variant.)
select
    anchored.*,
    coalesce(
        {col}_anchor_us >= ts_us - cast($window_seconds as bigint) * 1000000, false
    ) as {col}
from (
    select
        {prev}.*,
        lag(ts_us, $count - 1)
            over (partition by user_id order by ts_us, transaction_id) as {col}_anchor_us
    from {prev}
) as anchored
