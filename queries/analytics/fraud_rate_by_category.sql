-- One row per merchant category (NULL when the input has no category column): transactions,
-- fraud transactions, fraud rate (fraud / labelled) and total amount. Input: `transactions`.
with events as (
    select category, amount, is_fraud from transactions
),

by_category as (
    select
        category,
        count(*) as transactions,
        count_if(is_fraud) as fraud_transactions,
        count(is_fraud) as labelled_transactions,
        sum(amount) as amount_total
    from events
    group by category
),

final as (
    select
        category,
        transactions,
        fraud_transactions,
        case
            when labelled_transactions > 0
                then cast(fraud_transactions as double) / labelled_transactions
        end as fraud_rate,
        amount_total
    from by_category
)

select * from final order by fraud_rate desc nulls last, category
