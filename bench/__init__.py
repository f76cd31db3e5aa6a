"""Benchmarks: each writes bench/results/<name>.json and fails when its target is missed."""
