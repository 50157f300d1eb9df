"""Stripe's news applied: webhook events, the success page's look-up and reconciliation
all change the ledger through the pipeline, and run the jobs that are due."""
