-- in_list: one row per row of {prev}, plus {col} = the event is in scope and the value of its
-- field $field (merchant_id, device_id, card_last4, country or city; chosen by the bound name,
-- not spliced in) is one of the bound list $values. Exact, case-sensitive; NULL never matches.
select
    {prev}.*,
    {in_scope} and coalesce(
        case $field
            when 'merchant_id' then merchant_id
            when 'device_id' then device_id
            when 'card_last4' then card_last4
            when 'country' then country
            when 'city' then city
        end in (select v from unnest(cast($values as varchar[])) as listed(v)),
        false
    ) as {col}
from {prev}
