"""Triton kernels of torchinit, installed as ``torchinit.kernels`` (never as a top-level ``kernels``).

``math`` holds each activation's Triton math; ``elementwise`` and ``gated`` the generic kernels
built over it. Importing this package imports Triton: torchinit imports it lazily, only when a
kernel is about to run.
"""
