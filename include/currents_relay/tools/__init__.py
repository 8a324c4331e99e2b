"""Tools around the pipeline: the partner sandbox, the demo-data generator, `make run`, settings."""
