-- amount_over: one row per row of {prev}, plus {col} = the event is in scope and
-- amount > $threshold. Both sides are DECIMAL(18,2): the comparison is exact, never a float.
select
    {prev}.*,
    {in_scope} and amount > cast($threshold as decimal(18, 2)) as {col}
from {prev}
