"""Asynchronous inference: accept durable jobs, run them against the endpoint's model, write
results to S3 or files, and notify."""
