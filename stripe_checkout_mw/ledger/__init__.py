"""The ledger: every table and SQL statement (SQLite and PostgreSQL), the orders it
keeps, and the pipeline that claims Stripe's news before anything acts on it."""
