"""Side-by-side benchmarks of Memcloud against in-process and peer baselines (`make bench`)."""
