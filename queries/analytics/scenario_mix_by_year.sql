-- One row per (UTC year, fraud scenario) among labelled fraud: fraud transactions of that
-- scenario (NULL scenario = fraud without a named scenario), its share of the year's fraud, and
-- the year's transactions. Input: `transactions`.
with events as (
    select year(ts at time zone 'UTC') as year, is_fraud, fraud_scenario from transactions
),

yearly as (
    select year, count(*) as year_transactions from events group by year
),

by_scenario as (
    select year, fraud_scenario, count(*) as fraud_transactions
    from events
    where is_fraud
    group by year, fraud_scenario
),

final as (
    select
        by_scenario.year,
        by_scenario.fraud_scenario,
        by_scenario.fraud_transactions,
        cast(by_scenario.fraud_transactions as double)
            / sum(by_scenario.fraud_transactions) over (partition by by_scenario.year)
            as share_of_year_fraud,
        yearly.year_transactions
    from by_scenario
    join yearly on yearly.year = by_scenario.year
)

select * from final order by year, fraud_transactions desc, fraud_scenario
