"""Benchmark: the invoices-vs-payments workload, its generator, peer engines and harness.

Importing this package is cheap on purpose (no pyarrow, no engines): each peer runs as its
own process and should pay only for the libraries it uses.
"""
