"""Reports: plots and tables people would rather see than read."""
