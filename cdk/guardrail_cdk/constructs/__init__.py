"""One construct per concern: ledger, ingest, enforcement, alerting, monitoring."""
