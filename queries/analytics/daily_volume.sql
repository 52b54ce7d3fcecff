-- One row per UTC calendar day present in the input: number of transactions, total and mean
-- amount (DECIMAL), and how many are labelled fraud (NULL when the input has no labels).
-- Input: `transactions`.
with events as (
    select ts, amount, is_fraud from transactions
),

daily as (
    select
        cast(ts at time zone 'UTC' as date) as day,
        count(*) as transactions,
        sum(amount) as amount_total,
        avg(amount) as amount_mean,
        count_if(is_fraud) as fraud_transactions,
        count(is_fraud) as labelled_transactions
    from events
    group by 1
),

final as (
    select
        day,
        transactions,
        amount_total,
        amount_mean,
        case when labelled_transactions > 0 then fraud_transactions end as fraud_transactions
    from daily
)

select * from final order by day
