"""Benchmarks: task sets x decoding rules x settings -> accuracy, forward passes, tokens/s (`python -m engine bench`)."""
