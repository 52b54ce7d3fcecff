-- One row per UTC (year, month): transactions, fraud, alerts (flagged under the rule set given
-- with --rules / --set), true alerts, flag rate, precision and recall; the ad-hoc form of the
-- what-if drift (`python -m batch.backtest --drift` has it per rule): run it twice with
-- different --set values to compare two rule sets month by month, or render it for Athena.
-- Input: `flags` (the output of rules/flags.sql over `transactions`, provided by the runner).
with flags_in as (
    select ts, flagged, is_fraud from flags
),

monthly as (
    select
        year(ts at time zone 'UTC') as year,
        month(ts at time zone 'UTC') as month,
        count(*) as transactions,
        count_if(is_fraud) as fraud,
        count_if(flagged) as alerts,
        count_if(flagged and is_fraud) as true_alerts
    from flags_in
    group by 1, 2
),

final as (
    select
        year, month, transactions, fraud, alerts, true_alerts,
        alerts / transactions as flag_rate,
        case when alerts > 0 then true_alerts / alerts end as precision,
        case when fraud > 0 then true_alerts / fraud end as recall
    from monthly
    order by year, month
)

select * from final
