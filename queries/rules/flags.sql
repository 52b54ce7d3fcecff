-- One row per transaction: its id, user, time, place and labels, the four rule decisions of
-- docs/design.md (v1) and `flagged` = any of them.
-- Input: `transactions` (contract columns; labels may be NULL).
-- Per user, events are ordered by (ts, transaction_id); every rule looks only at the event and
-- its predecessors in that order (causal), so one window pass decides all four rules:
--   high_frequency: >= count events in [ts - window, ts] up to and including this one
--     <=> the event (count - 1) places earlier exists and is within the window;
--   geo_mismatch: haversine to the immediately preceding event, hours floored at min_hours.
-- Speed: the pass orders by ts alone (a cheap integer sort key), which is exact for every user
-- without two events at the same ts; the few users with such ties are ordered again by
-- (ts, transaction_id). Time arithmetic is on integer epoch microseconds (exact, no time-zone
-- library): local hour = floor((epoch minutes + utc_offset_min) / 60) mod 24, for ts >= 1970.
-- The single-rule files state each rule the literal way; tests hold all of them equal.
-- Parameters (bound, never formatted in): see queries/params.py.
with events as (
    select
        transaction_id, user_id, ts, amount, lat, lon, utc_offset_min, is_fraud, fraud_scenario,
        epoch_us(ts) as ts_us
    from transactions
),

by_ts as (
    select
        events.*,
        lag(ts_us, $high_frequency_count - 1)
            over (partition by user_id order by ts_us) as window_anchor_us,
        lag(ts_us) over (partition by user_id order by ts_us) as prev_us,
        lag(lat) over (partition by user_id order by ts_us) as prev_lat,
        lag(lon) over (partition by user_id order by ts_us) as prev_lon
    from events
),

users_with_ties as (
    select distinct user_id from by_ts where prev_us = ts_us
),

by_ts_and_id as (
    select
        events.*,
        lag(ts_us, $high_frequency_count - 1)
            over (partition by user_id order by ts_us, transaction_id) as window_anchor_us,
        lag(ts_us) over (partition by user_id order by ts_us, transaction_id) as prev_us,
        lag(lat) over (partition by user_id order by ts_us, transaction_id) as prev_lat,
        lag(lon) over (partition by user_id order by ts_us, transaction_id) as prev_lon
    from events
    where user_id in (select user_id from users_with_ties)
),

ordered as (
    -- (NULL user_id rows stay here: NOT IN over a set holding NULL would drop every row)
    select * from by_ts
    where user_id is null
        or user_id not in (select user_id from users_with_ties where user_id is not null)
    union all
    select * from by_ts_and_id
),

measured as (
    select
        ordered.*,
        ((ts_us // 60000000 + utc_offset_min) // 60) % 24 as local_hour,
        -- greatest/least skip NULLs in DuckDB: a first event (no prev_us) must stay NULL
        case when prev_us is not null then
            2 * $geo_mismatch_earth_radius_km * asin(sqrt(least(greatest(
            power(sin((radians(lat) - radians(prev_lat)) / 2), 2)
            + cos(radians(prev_lat)) * cos(radians(lat))
            * power(sin(radians(lon - prev_lon) / 2), 2), 0.0), 1.0))) end as prev_km,
        case when prev_us is not null then
            greatest((ts_us - prev_us) / 1000000 / 3600, $geo_mismatch_min_hours)
        end as prev_hours
    from ordered
),

decided as (
    select
        transaction_id, user_id, ts, lat, lon, is_fraud, fraud_scenario,
        amount > cast($high_amount_threshold as decimal(18, 2)) as high_amount,
        coalesce(
            window_anchor_us >= ts_us - $high_frequency_window_seconds * 1000000, false
        ) as high_frequency,
        case
            when $unusual_hour_start_hour <= $unusual_hour_end_hour
                then local_hour >= $unusual_hour_start_hour and local_hour < $unusual_hour_end_hour
            else local_hour >= $unusual_hour_start_hour or local_hour < $unusual_hour_end_hour
        end as unusual_hour,
        coalesce(
            prev_us is not null
            and prev_km >= $geo_mismatch_distance_km
            and prev_km / prev_hours > $geo_mismatch_speed_kmh, false
        ) as geo_mismatch
    from measured
),

final as (
    select
        decided.*,
        high_amount or high_frequency or unusual_hour or geo_mismatch as flagged
    from decided
)

select * from final
