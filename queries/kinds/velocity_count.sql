-- velocity_count: one row per row of {prev}, plus {col} = the event matches (in scope and, when
-- $max_amount is given, amount <= $max_amount) and at least $count matching events e' <= e of
-- the user, in (ts, transaction_id) order, have e'.ts >= e.ts - $window_seconds (e included).
-- Among the matching events that is: the one ($count - 1) places earlier exists and lies in the
-- window; IGNORE NULLS skips the events that do not match.
select
    anchored.*,
    {col}_match and coalesce(
        {col}_anchor_us >= ts_us - cast($window_seconds as bigint) * 1000000, false
    ) as {col}
from (
    select
        matched.*,
        lag(case when {col}_match then ts_us end, $count - 1 ignore nulls)
            over (partition by user_id order by ts_us, transaction_id) as {col}_anchor_us
    from (
        select
            {prev}.*,
            {in_scope} and (
                cast($max_amount as decimal(18, 2)) is null
                or amount <= cast($max_amount as decimal(18, 2))
            ) as {col}_match
        from {prev}
    ) as matched
) as anchored
