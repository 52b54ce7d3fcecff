-- One row per transaction: transaction_id, amount and `high_amount` (amount > threshold).
-- Input: `transactions`. The amount is DECIMAL(18,2) and the threshold is bound and cast to
-- DECIMAL(18,2): the comparison is exact, never a float.
with events as (
    select transaction_id, amount from transactions
),

final as (
    select
        transaction_id,
        amount,
        amount > cast($high_amount_threshold as decimal(18, 2)) as high_amount
    from events
)

select * from final
