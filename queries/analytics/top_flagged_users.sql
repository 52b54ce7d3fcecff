-- One row per user among the $top_n users with the most flagged transactions (ties by user_id):
-- transactions, flagged transactions, how often each rule fired, fraud transactions and the
-- time of the user's last flagged transaction.
-- Input: `flags` (the output of rules/flags.sql over `transactions`, provided by the runner).
-- param: top_n = 20
with flags_in as (
    select
        user_id, ts, flagged, high_amount, high_frequency, unusual_hour, geo_mismatch, is_fraud
    from flags
),

by_user as (
    select
        user_id,
        count(*) as transactions,
        count_if(flagged) as flagged_transactions,
        count_if(high_amount) as high_amount,
        count_if(high_frequency) as high_frequency,
        count_if(unusual_hour) as unusual_hour,
        count_if(geo_mismatch) as geo_mismatch,
        count_if(is_fraud) as fraud_transactions,
        max(case when flagged then ts end) as last_flagged_ts
    from flags_in
    group by user_id
),

final as (
    select * from by_user
    where flagged_transactions > 0
    order by flagged_transactions desc, user_id
    limit $top_n
)

select * from final
