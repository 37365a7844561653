"""Training: recipe config, data sampling, the loop and checkpoint writing."""
