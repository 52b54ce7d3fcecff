-- One row per local hour of day (0..23; hour of ts + utc_offset_min minutes, the clock the
-- unusual_hour rule reads): transactions, fraud transactions and fraud rate.
-- Input: `transactions`.
with events as (
    select ts, utc_offset_min, is_fraud from transactions
),

localized as (
    select
        hour((ts at time zone 'UTC') + utc_offset_min * interval '1 minute') as local_hour,
        is_fraud
    from events
),

by_hour as (
    select
        local_hour,
        count(*) as transactions,
        count_if(is_fraud) as fraud_transactions,
        count(is_fraud) as labelled_transactions
    from localized
    group by local_hour
),

final as (
    select
        local_hour,
        transactions,
        fraud_transactions,
        case
            when labelled_transactions > 0
                then cast(fraud_transactions as double) / labelled_transactions
        end as fraud_rate
    from by_hour
)

select * from final order by local_hour
