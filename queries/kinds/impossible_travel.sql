-- impossible_travel: one row per row of {prev}, plus {col} = the event is in scope and, against
-- the user's immediately preceding event p (any scope, (ts, transaction_id) order):
-- d = haversine(p, e) with R = $earth_radius_km, h = max(hours between them, $min_hours),
-- d >= $distance_km and d / h > $speed_kmh. A user's first event never fires.
select
    measured.*,
    {in_scope} and coalesce(
        {col}_prev_us is not null
        and {col}_km >= $distance_km
        and {col}_km / {col}_hours > $speed_kmh, false
    ) as {col}
from (
    select
        paired.*,
        -- greatest/least skip NULLs in DuckDB: a first event (no predecessor) must stay NULL
        case when {col}_prev_us is not null then
            2 * $earth_radius_km * asin(sqrt(least(greatest(
            power(sin((radians(lat) - radians({col}_prev_lat)) / 2), 2)
            + cos(radians({col}_prev_lat)) * cos(radians(lat))
            * power(sin(radians(lon - {col}_prev_lon) / 2), 2), 0.0), 1.0))) end as {col}_km,
        case when {col}_prev_us is not null then
            greatest((ts_us - {col}_prev_us) / 1000000 / 3600, $min_hours)
        end as {col}_hours
    from (
        select
            {prev}.*,
            lag(ts_us) over w as {col}_prev_us,
            lag(lat) over w as {col}_prev_lat,
            lag(lon) over w as {col}_prev_lon
        from {prev}
        window w as (partition by user_id order by ts_us, transaction_id)
    ) as paired
) as measured
