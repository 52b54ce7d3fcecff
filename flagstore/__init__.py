"""Flag stores: one flag schema, the typed writer and reader protocols, SQLite and MongoDB."""
