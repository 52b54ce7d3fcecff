-- local_hour: one row per row of {prev}, plus {col} = the event is in scope and its local hour
-- (hour of ts + utc_offset_min minutes) is in [$start_hour, $end_hour), or, when start > end
-- (a window past midnight such as 23 -> 5), hour >= start or hour < end.
-- Integer epoch arithmetic (exact, no time-zone library), valid for ts >= 1970.
select
    hours.*,
    {in_scope} and case
        when $start_hour <= $end_hour
            then {col}_hour >= $start_hour and {col}_hour < $end_hour
        else {col}_hour >= $start_hour or {col}_hour < $end_hour
    end as {col}
from (
    select {prev}.*, ((ts_us // 60000000 + utc_offset_min) // 60) % 24 as {col}_hour
    from {prev}
) as hours
