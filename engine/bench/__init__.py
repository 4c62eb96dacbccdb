"""Benchmarks: task sets x decoding rules x settings -> accuracy, NFE, tokens/s (`python -m engine bench`)."""
