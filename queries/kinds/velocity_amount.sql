-- velocity_amount: one row per row of {prev}, plus {col} = the event is in scope and the sum of
-- amount over the user's in-scope events e' <= e, in (ts, transaction_id) order, with
-- e'.ts >= e.ts - $window_seconds is > $total (decimal sums, exact).
-- That sum = the running in-scope sum up to e minus the in-scope sum of the events before the
-- window (ts < e.ts - window: a RANGE frame over integer microseconds).
select
    summed.*,
    {col}_in
    and {col}_upto - coalesce({col}_before, 0) > cast($total as decimal(18, 2)) as {col}
from (
    select
        scoped.*,
        sum(case when {col}_in then amount else 0 end) over (
            partition by user_id order by ts_us, transaction_id
            rows between unbounded preceding and current row
        ) as {col}_upto,
        sum(case when {col}_in then amount else 0 end) over (
            partition by user_id order by ts_us
            range between unbounded preceding
            and cast($window_seconds as bigint) * 1000000 + 1 preceding
        ) as {col}_before
    from (select {prev}.*, {in_scope} as {col}_in from {prev}) as scoped
) as summed
