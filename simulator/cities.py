"""Built-in table of real cities: name, ISO country, latitude, longitude, IANA zone, weight.

The weight is a rough metro population in millions; it sets how many card holders live there,
how many merchants it has and how often travellers visit. Coordinates are city centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name, country, lat, lon, time zone, weight
_ROWS: tuple[tuple[str, str, float, float, str, float], ...] = (
    # North America
    ("New York", "US", 40.7128, -74.0060, "America/New_York", 19.0),
    ("Los Angeles", "US", 34.0522, -118.2437, "America/Los_Angeles", 13.0),
    ("Chicago", "US", 41.8781, -87.6298, "America/Chicago", 9.5),
    ("Houston", "US", 29.7604, -95.3698, "America/Chicago", 7.0),
    ("Phoenix", "US", 33.4484, -112.0740, "America/Phoenix", 4.9),
    ("Philadelphia", "US", 39.9526, -75.1652, "America/New_York", 6.2),
    ("San Antonio", "US", 29.4241, -98.4936, "America/Chicago", 2.6),
    ("San Diego", "US", 32.7157, -117.1611, "America/Los_Angeles", 3.3),
    ("Dallas", "US", 32.7767, -96.7970, "America/Chicago", 7.6),
    ("San Jose", "US", 37.3382, -121.8863, "America/Los_Angeles", 2.0),
    ("Austin", "US", 30.2672, -97.7431, "America/Chicago", 2.3),
    ("Jacksonville", "US", 30.3322, -81.6557, "America/New_York", 1.6),
    ("Columbus", "US", 39.9612, -82.9988, "America/New_York", 2.1),
    ("Indianapolis", "US", 39.7684, -86.1581, "America/Indiana/Indianapolis", 2.1),
    ("San Francisco", "US", 37.7749, -122.4194, "America/Los_Angeles", 4.7),
    ("Seattle", "US", 47.6062, -122.3321, "America/Los_Angeles", 4.0),
    ("Denver", "US", 39.7392, -104.9903, "America/Denver", 2.9),
    ("Washington", "US", 38.9072, -77.0369, "America/New_York", 6.3),
    ("Boston", "US", 42.3601, -71.0589, "America/New_York", 4.9),
    ("Nashville", "US", 36.1627, -86.7816, "America/Chicago", 2.0),
    ("Detroit", "US", 42.3314, -83.0458, "America/Detroit", 4.3),
    ("Portland", "US", 45.5152, -122.6784, "America/Los_Angeles", 2.5),
    ("Las Vegas", "US", 36.1699, -115.1398, "America/Los_Angeles", 2.3),
    ("Memphis", "US", 35.1495, -90.0490, "America/Chicago", 1.3),
    ("Baltimore", "US", 39.2904, -76.6122, "America/New_York", 2.8),
    ("Milwaukee", "US", 43.0389, -87.9065, "America/Chicago", 1.6),
    ("Albuquerque", "US", 35.0844, -106.6504, "America/Denver", 0.9),
    ("Atlanta", "US", 33.7490, -84.3880, "America/New_York", 6.1),
    ("Miami", "US", 25.7617, -80.1918, "America/New_York", 6.1),
    ("Minneapolis", "US", 44.9778, -93.2650, "America/Chicago", 3.7),
    ("New Orleans", "US", 29.9511, -90.0715, "America/Chicago", 1.3),
    ("Salt Lake City", "US", 40.7608, -111.8910, "America/Denver", 1.3),
    ("Anchorage", "US", 61.2181, -149.9003, "America/Anchorage", 0.4),
    ("Honolulu", "US", 21.3069, -157.8583, "Pacific/Honolulu", 1.0),
    ("Charlotte", "US", 35.2271, -80.8431, "America/New_York", 2.7),
    ("St. Louis", "US", 38.6270, -90.1994, "America/Chicago", 2.8),
    ("Pittsburgh", "US", 40.4406, -79.9959, "America/New_York", 2.4),
    ("Kansas City", "US", 39.0997, -94.5786, "America/Chicago", 2.2),
    ("Orlando", "US", 28.5383, -81.3792, "America/New_York", 2.7),
    ("Toronto", "CA", 43.6532, -79.3832, "America/Toronto", 6.2),
    ("Montreal", "CA", 45.5017, -73.5673, "America/Toronto", 4.3),
    ("Vancouver", "CA", 49.2827, -123.1207, "America/Vancouver", 2.6),
    ("Calgary", "CA", 51.0447, -114.0719, "America/Edmonton", 1.5),
    ("Ottawa", "CA", 45.4215, -75.6972, "America/Toronto", 1.4),
    ("Halifax", "CA", 44.6488, -63.5752, "America/Halifax", 0.4),
    ("Winnipeg", "CA", 49.8951, -97.1384, "America/Winnipeg", 0.8),
    ("Mexico City", "MX", 19.4326, -99.1332, "America/Mexico_City", 21.8),
    ("Guadalajara", "MX", 20.6597, -103.3496, "America/Mexico_City", 5.3),
    ("Monterrey", "MX", 25.6866, -100.3161, "America/Monterrey", 5.3),
    ("Cancun", "MX", 21.1619, -86.8515, "America/Cancun", 0.9),
    ("Havana", "CU", 23.1136, -82.3666, "America/Havana", 2.1),
    ("Panama City", "PA", 8.9824, -79.5199, "America/Panama", 1.9),
    ("San Juan", "PR", 18.4655, -66.1057, "America/Puerto_Rico", 2.4),
    # South America
    ("Sao Paulo", "BR", -23.5505, -46.6333, "America/Sao_Paulo", 22.0),
    ("Rio de Janeiro", "BR", -22.9068, -43.1729, "America/Sao_Paulo", 13.5),
    ("Brasilia", "BR", -15.7939, -47.8828, "America/Sao_Paulo", 4.7),
    ("Buenos Aires", "AR", -34.6037, -58.3816, "America/Argentina/Buenos_Aires", 15.4),
    ("Santiago", "CL", -33.4489, -70.6693, "America/Santiago", 6.8),
    ("Lima", "PE", -12.0464, -77.0428, "America/Lima", 10.9),
    ("Bogota", "CO", 4.7110, -74.0721, "America/Bogota", 11.0),
    ("Caracas", "VE", 10.4806, -66.9036, "America/Caracas", 2.9),
    ("Quito", "EC", -0.1807, -78.4678, "America/Guayaquil", 2.8),
    ("Montevideo", "UY", -34.9011, -56.1645, "America/Montevideo", 1.7),
    ("Asuncion", "PY", -25.2637, -57.5759, "America/Asuncion", 3.2),
    # Europe
    ("London", "GB", 51.5074, -0.1278, "Europe/London", 9.5),
    ("Manchester", "GB", 53.4808, -2.2426, "Europe/London", 2.8),
    ("Birmingham", "GB", 52.4862, -1.8904, "Europe/London", 2.6),
    ("Edinburgh", "GB", 55.9533, -3.1883, "Europe/London", 0.9),
    ("Glasgow", "GB", 55.8642, -4.2518, "Europe/London", 1.7),
    ("Dublin", "IE", 53.3498, -6.2603, "Europe/Dublin", 1.4),
    ("Paris", "FR", 48.8566, 2.3522, "Europe/Paris", 11.1),
    ("Lyon", "FR", 45.7640, 4.8357, "Europe/Paris", 2.3),
    ("Marseille", "FR", 43.2965, 5.3698, "Europe/Paris", 1.9),
    ("Toulouse", "FR", 43.6047, 1.4442, "Europe/Paris", 1.4),
    ("Nice", "FR", 43.7102, 7.2620, "Europe/Paris", 1.0),
    ("Berlin", "DE", 52.5200, 13.4050, "Europe/Berlin", 4.5),
    ("Hamburg", "DE", 53.5511, 9.9937, "Europe/Berlin", 2.5),
    ("Munich", "DE", 48.1351, 11.5820, "Europe/Berlin", 2.9),
    ("Cologne", "DE", 50.9375, 6.9603, "Europe/Berlin", 2.1),
    ("Frankfurt", "DE", 50.1109, 8.6821, "Europe/Berlin", 2.3),
    ("Stuttgart", "DE", 48.7758, 9.1829, "Europe/Berlin", 1.8),
    ("Amsterdam", "NL", 52.3676, 4.9041, "Europe/Amsterdam", 2.5),
    ("Rotterdam", "NL", 51.9244, 4.4777, "Europe/Amsterdam", 1.2),
    ("Brussels", "BE", 50.8503, 4.3517, "Europe/Brussels", 2.1),
    ("Luxembourg", "LU", 49.6116, 6.1319, "Europe/Luxembourg", 0.6),
    ("Zurich", "CH", 47.3769, 8.5417, "Europe/Zurich", 1.4),
    ("Geneva", "CH", 46.2044, 6.1432, "Europe/Zurich", 0.6),
    ("Vienna", "AT", 48.2082, 16.3738, "Europe/Vienna", 2.9),
    ("Madrid", "ES", 40.4168, -3.7038, "Europe/Madrid", 6.7),
    ("Barcelona", "ES", 41.3874, 2.1686, "Europe/Madrid", 5.6),
    ("Valencia", "ES", 39.4699, -0.3763, "Europe/Madrid", 1.6),
    ("Seville", "ES", 37.3891, -5.9845, "Europe/Madrid", 1.5),
    ("Lisbon", "PT", 38.7223, -9.1393, "Europe/Lisbon", 2.9),
    ("Porto", "PT", 41.1579, -8.6291, "Europe/Lisbon", 1.7),
    ("Rome", "IT", 41.9028, 12.4964, "Europe/Rome", 4.3),
    ("Milan", "IT", 45.4642, 9.1900, "Europe/Rome", 4.3),
    ("Naples", "IT", 40.8518, 14.2681, "Europe/Rome", 3.1),
    ("Turin", "IT", 45.0703, 7.6869, "Europe/Rome", 1.8),
    ("Athens", "GR", 37.9838, 23.7275, "Europe/Athens", 3.2),
    ("Copenhagen", "DK", 55.6761, 12.5683, "Europe/Copenhagen", 2.1),
    ("Stockholm", "SE", 59.3293, 18.0686, "Europe/Stockholm", 2.4),
    ("Gothenburg", "SE", 57.7089, 11.9746, "Europe/Stockholm", 1.0),
    ("Oslo", "NO", 59.9139, 10.7522, "Europe/Oslo", 1.6),
    ("Helsinki", "FI", 60.1699, 24.9384, "Europe/Helsinki", 1.5),
    ("Reykjavik", "IS", 64.1466, -21.9426, "Atlantic/Reykjavik", 0.2),
    ("Warsaw", "PL", 52.2297, 21.0122, "Europe/Warsaw", 3.1),
    ("Krakow", "PL", 50.0647, 19.9450, "Europe/Warsaw", 1.4),
    ("Prague", "CZ", 50.0755, 14.4378, "Europe/Prague", 2.7),
    ("Budapest", "HU", 47.4979, 19.0402, "Europe/Budapest", 3.0),
    ("Bucharest", "RO", 44.4268, 26.1025, "Europe/Bucharest", 2.3),
    ("Sofia", "BG", 42.6977, 23.3219, "Europe/Sofia", 1.5),
    ("Belgrade", "RS", 44.7866, 20.4489, "Europe/Belgrade", 1.7),
    ("Zagreb", "HR", 45.8150, 15.9819, "Europe/Zagreb", 1.1),
    ("Kyiv", "UA", 50.4501, 30.5234, "Europe/Kyiv", 3.5),
    ("Moscow", "RU", 55.7558, 37.6173, "Europe/Moscow", 17.0),
    ("Saint Petersburg", "RU", 59.9311, 30.3609, "Europe/Moscow", 5.6),
    ("Istanbul", "TR", 41.0082, 28.9784, "Europe/Istanbul", 15.6),
    ("Ankara", "TR", 39.9334, 32.8597, "Europe/Istanbul", 5.7),
    ("Riga", "LV", 56.9496, 24.1052, "Europe/Riga", 0.9),
    ("Vilnius", "LT", 54.6872, 25.2797, "Europe/Vilnius", 0.8),
    ("Tallinn", "EE", 59.4370, 24.7536, "Europe/Tallinn", 0.6),
    # Middle East and Africa
    ("Dubai", "AE", 25.2048, 55.2708, "Asia/Dubai", 3.5),
    ("Abu Dhabi", "AE", 24.4539, 54.3773, "Asia/Dubai", 1.5),
    ("Doha", "QA", 25.2854, 51.5310, "Asia/Qatar", 2.4),
    ("Riyadh", "SA", 24.7136, 46.6753, "Asia/Riyadh", 7.7),
    ("Tel Aviv", "IL", 32.0853, 34.7818, "Asia/Jerusalem", 4.2),
    ("Amman", "JO", 31.9454, 35.9284, "Asia/Amman", 4.0),
    ("Beirut", "LB", 33.8938, 35.5018, "Asia/Beirut", 2.4),
    ("Tehran", "IR", 35.6892, 51.3890, "Asia/Tehran", 9.4),
    ("Cairo", "EG", 30.0444, 31.2357, "Africa/Cairo", 21.3),
    ("Casablanca", "MA", 33.5731, -7.5898, "Africa/Casablanca", 3.8),
    ("Lagos", "NG", 6.5244, 3.3792, "Africa/Lagos", 15.4),
    ("Nairobi", "KE", -1.2921, 36.8219, "Africa/Nairobi", 4.9),
    ("Addis Ababa", "ET", 9.0300, 38.7400, "Africa/Addis_Ababa", 5.2),
    ("Accra", "GH", 5.6037, -0.1870, "Africa/Accra", 2.6),
    ("Johannesburg", "ZA", -26.2041, 28.0473, "Africa/Johannesburg", 6.0),
    ("Cape Town", "ZA", -33.9249, 18.4241, "Africa/Johannesburg", 4.8),
    ("Tunis", "TN", 36.8065, 10.1815, "Africa/Tunis", 2.4),
    ("Dakar", "SN", 14.7167, -17.4677, "Africa/Dakar", 3.3),
    # Asia and Oceania
    ("Tokyo", "JP", 35.6762, 139.6503, "Asia/Tokyo", 37.0),
    ("Osaka", "JP", 34.6937, 135.5023, "Asia/Tokyo", 19.0),
    ("Nagoya", "JP", 35.1815, 136.9066, "Asia/Tokyo", 9.5),
    ("Sapporo", "JP", 43.0618, 141.3545, "Asia/Tokyo", 2.6),
    ("Seoul", "KR", 37.5665, 126.9780, "Asia/Seoul", 25.5),
    ("Busan", "KR", 35.1796, 129.0756, "Asia/Seoul", 3.4),
    ("Beijing", "CN", 39.9042, 116.4074, "Asia/Shanghai", 21.5),
    ("Shanghai", "CN", 31.2304, 121.4737, "Asia/Shanghai", 27.0),
    ("Guangzhou", "CN", 23.1291, 113.2644, "Asia/Shanghai", 13.9),
    ("Shenzhen", "CN", 22.5431, 114.0579, "Asia/Shanghai", 12.6),
    ("Chengdu", "CN", 30.5728, 104.0668, "Asia/Shanghai", 9.3),
    ("Hong Kong", "HK", 22.3193, 114.1694, "Asia/Hong_Kong", 7.5),
    ("Taipei", "TW", 25.0330, 121.5654, "Asia/Taipei", 7.0),
    ("Manila", "PH", 14.5995, 120.9842, "Asia/Manila", 13.9),
    ("Bangkok", "TH", 13.7563, 100.5018, "Asia/Bangkok", 10.7),
    ("Ho Chi Minh City", "VN", 10.8231, 106.6297, "Asia/Ho_Chi_Minh", 9.0),
    ("Hanoi", "VN", 21.0278, 105.8342, "Asia/Ho_Chi_Minh", 8.1),
    ("Kuala Lumpur", "MY", 3.1390, 101.6869, "Asia/Kuala_Lumpur", 8.4),
    ("Singapore", "SG", 1.3521, 103.8198, "Asia/Singapore", 5.9),
    ("Jakarta", "ID", -6.2088, 106.8456, "Asia/Jakarta", 10.6),
    ("Bali", "ID", -8.6500, 115.2167, "Asia/Makassar", 1.0),
    ("Mumbai", "IN", 19.0760, 72.8777, "Asia/Kolkata", 20.7),
    ("Delhi", "IN", 28.7041, 77.1025, "Asia/Kolkata", 31.0),
    ("Bangalore", "IN", 12.9716, 77.5946, "Asia/Kolkata", 12.3),
    ("Chennai", "IN", 13.0827, 80.2707, "Asia/Kolkata", 11.0),
    ("Kolkata", "IN", 22.5726, 88.3639, "Asia/Kolkata", 14.9),
    ("Hyderabad", "IN", 17.3850, 78.4867, "Asia/Kolkata", 10.0),
    ("Karachi", "PK", 24.8607, 67.0011, "Asia/Karachi", 16.1),
    ("Lahore", "PK", 31.5204, 74.3587, "Asia/Karachi", 13.1),
    ("Dhaka", "BD", 23.8103, 90.4125, "Asia/Dhaka", 21.0),
    ("Kathmandu", "NP", 27.7172, 85.3240, "Asia/Kathmandu", 1.4),
    ("Colombo", "LK", 6.9271, 79.8612, "Asia/Colombo", 2.3),
    ("Tashkent", "UZ", 41.2995, 69.2401, "Asia/Tashkent", 2.5),
    ("Almaty", "KZ", 43.2220, 76.8512, "Asia/Almaty", 2.0),
    ("Sydney", "AU", -33.8688, 151.2093, "Australia/Sydney", 5.3),
    ("Melbourne", "AU", -37.8136, 144.9631, "Australia/Melbourne", 5.1),
    ("Brisbane", "AU", -27.4698, 153.0251, "Australia/Brisbane", 2.6),
    ("Perth", "AU", -31.9505, 115.8605, "Australia/Perth", 2.1),
    ("Adelaide", "AU", -34.9285, 138.6007, "Australia/Adelaide", 1.4),
    ("Darwin", "AU", -12.4634, 130.8456, "Australia/Darwin", 0.15),
    ("Auckland", "NZ", -36.8485, 174.7633, "Pacific/Auckland", 1.7),
    ("Wellington", "NZ", -41.2865, 174.7762, "Pacific/Auckland", 0.4),
)


@dataclass(frozen=True)
class Cities:
    """Column arrays of the city table (index = city id)."""

    name: tuple[str, ...]
    country: tuple[str, ...]
    lat: np.ndarray  # float64, degrees
    lon: np.ndarray  # float64, degrees
    zone: tuple[str, ...]  # IANA zone per city
    country_id: np.ndarray  # int32 index into ``countries``
    countries: tuple[str, ...]  # distinct ISO codes
    zone_id: np.ndarray  # int32 index into ``zones``
    zones: tuple[str, ...]  # distinct zones
    weight: np.ndarray  # float64, sums to 1

    def __len__(self) -> int:
        return len(self.name)


def load_cities() -> Cities:
    """The built-in table as arrays."""
    names, countries, lats, lons, zone, weights = zip(*_ROWS, strict=True)
    zones = tuple(sorted(set(zone)))
    country_codes = tuple(sorted(set(countries)))
    w = np.asarray(weights, dtype=np.float64)
    return Cities(
        name=names,
        country=countries,
        lat=np.asarray(lats, dtype=np.float64),
        lon=np.asarray(lons, dtype=np.float64),
        zone=zone,
        country_id=np.asarray([country_codes.index(c) for c in countries], dtype=np.int32),
        countries=country_codes,
        zone_id=np.asarray([zones.index(z) for z in zone], dtype=np.int32),
        zones=zones,
        weight=w / w.sum(),
    )


def haversine_km(lat1, lon1, lat2, lon2, radius_km: float = 6371.0) -> np.ndarray:
    """Great-circle distance (vectorised), the same formula the geo_mismatch rule uses."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * radius_km * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
