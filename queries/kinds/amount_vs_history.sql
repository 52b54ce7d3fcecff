-- amount_vs_history: one row per row of {prev}, plus {col} = the event is in scope, the user has
-- at least $min_history of the $history events immediately before it (any scope,
-- (ts, transaction_id) order), and amount > $ratio x their median. The median is the middle
-- amount, or the mean of the two middle ones: 2 * amount > ratio * (m1 + m2) (for an odd count
-- m1 = m2), all in DECIMAL arithmetic, exact.
select
    medians.*,
    {in_scope} and coalesce(
        {col}_n >= $min_history
        and 2 * amount > cast($ratio as decimal(9, 4)) * (
            {col}_hist[({col}_n + 1) // 2] + {col}_hist[{col}_n // 2 + 1]
        ), false
    ) as {col}
from (
    select history.*, coalesce(array_length({col}_hist), 0) as {col}_n
    from (
        select
            {prev}.*,
            list_sort(list(amount) over (
                partition by user_id order by ts_us, transaction_id
                rows between $history preceding and 1 preceding
            )) as {col}_hist
        from {prev}
    ) as history
) as medians
