"""Asset definitions grouped by domain: ingest, training, evaluation."""
