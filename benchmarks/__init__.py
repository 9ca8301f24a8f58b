"""Benchmarks: speed and accuracy measurements that write results with the machine description."""
