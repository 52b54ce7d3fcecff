-- One row per transaction: transaction_id, user_id, ts, the great-circle distance (km,
-- haversine with R = $geo_mismatch_earth_radius_km) from the user's immediately preceding event
-- in (ts, transaction_id) order, the hours between them (floored at $geo_mismatch_min_hours),
-- the implied speed, and `geo_mismatch`: distance >= $geo_mismatch_distance_km and
-- speed > $geo_mismatch_speed_kmh. A user's first event has no predecessor: never flagged.
-- Input: `transactions`.
with events as (
    select transaction_id, user_id, ts, lat, lon from transactions
),

paired as (
    select
        events.*,
        lag(ts) over (partition by user_id order by ts, transaction_id) as prev_ts,
        lag(lat) over (partition by user_id order by ts, transaction_id) as prev_lat,
        lag(lon) over (partition by user_id order by ts, transaction_id) as prev_lon
    from events
),

measured as (
    select
        transaction_id,
        user_id,
        ts,
        prev_ts,
        -- greatest/least skip NULLs in DuckDB: a first event (no prev_ts) must stay NULL
        case when prev_ts is not null then
            2 * $geo_mismatch_earth_radius_km * asin(sqrt(least(greatest(
            power(sin((radians(lat) - radians(prev_lat)) / 2), 2)
            + cos(radians(prev_lat)) * cos(radians(lat))
            * power(sin(radians(lon - prev_lon) / 2), 2), 0.0), 1.0))) end as distance_km,
        case when prev_ts is not null then greatest(
            date_diff('microsecond', prev_ts, ts) / 1000000 / 3600, $geo_mismatch_min_hours
        ) end as hours
    from paired
),

final as (
    select
        measured.*,
        distance_km / hours as speed_kmh,
        coalesce(
            prev_ts is not null
            and distance_km >= $geo_mismatch_distance_km
            and distance_km / hours > $geo_mismatch_speed_kmh, false
        ) as geo_mismatch
    from measured
)

select * from final
