-- new_device: one row per row of {prev}, plus {col} = the event is in scope, has a device_id
-- (empty counts as NULL, see the composer's base), the user has at least $min_history events
-- e' < e (any scope, NULL devices included, (ts, transaction_id) order) with
-- e'.ts >= e.ts - $lookback_days days (inclusive), and none of them has e's device_id.
-- Events in the lookback = earlier events - those before the lookback (a RANGE frame over
-- integer microseconds); the device was seen there iff the user's previous event with the same
-- device lies in the lookback.
select
    seen.*,
    {in_scope} and device_id is not null
    and {col}_earlier - {col}_before >= $min_history
    and coalesce(
        {col}_same_prev_us < ts_us - cast($lookback_days as bigint) * 86400000000, true
    ) as {col}
from (
    select
        {prev}.*,
        row_number() over (partition by user_id order by ts_us, transaction_id) - 1
            as {col}_earlier,
        count(*) over (
            partition by user_id order by ts_us
            range between unbounded preceding
            and cast($lookback_days as bigint) * 86400000000 + 1 preceding
        ) as {col}_before,
        lag(ts_us) over (partition by user_id, device_id order by ts_us, transaction_id)
            as {col}_same_prev_us
    from {prev}
) as seen
