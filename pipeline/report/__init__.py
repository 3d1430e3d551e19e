"""Reports: the tables and figures written from the stages' metrics."""
