-- One row per transaction: transaction_id, the local hour (hour of ts + utc_offset_min minutes)
-- and `unusual_hour`: start <= hour < end, or, when start > end (a window past midnight such as
-- 23 -> 5), hour >= start or hour < end. Input: `transactions`.
with events as (
    select transaction_id, ts, utc_offset_min from transactions
),

localized as (
    select
        transaction_id,
        hour((ts at time zone 'UTC') + utc_offset_min * interval '1 minute') as local_hour
    from events
),

final as (
    select
        transaction_id,
        local_hour,
        case
            when $unusual_hour_start_hour <= $unusual_hour_end_hour
                then local_hour >= $unusual_hour_start_hour and local_hour < $unusual_hour_end_hour
            else local_hour >= $unusual_hour_start_hour or local_hour < $unusual_hour_end_hour
        end as unusual_hour
    from localized
)

select * from final
