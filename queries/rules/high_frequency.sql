-- One row per transaction: transaction_id, user_id, ts, the number of the user's events in
-- [ts - window, ts] up to and including this one (in (ts, transaction_id) order; a later event
-- with the same ts never counts), and `high_frequency` (that count >= $high_frequency_count).
-- Input: `transactions`.
-- Counting: a RANGE frame over ts also counts later same-ts peers, so subtract them:
--   count = range_count - (peers_with_same_ts - position_among_same_ts_peers).
with events as (
    select transaction_id, user_id, ts from transactions
),

counted as (
    select
        events.*,
        count(*) over (
            partition by user_id order by ts
            range between $high_frequency_window_seconds * interval '1 second' preceding
            and current row
        ) as range_count,
        count(*) over (partition by user_id, ts) as same_ts_peers,
        row_number() over (partition by user_id, ts order by transaction_id) as same_ts_position
    from events
),

final as (
    select
        transaction_id,
        user_id,
        ts,
        range_count - (same_ts_peers - same_ts_position) as events_in_window,
        range_count - (same_ts_peers - same_ts_position) >= $high_frequency_count
            as high_frequency
    from counted
)

select * from final
