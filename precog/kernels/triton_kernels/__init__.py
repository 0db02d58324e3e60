"""Triton kernels; importing any module here imports triton, so only calls that dispatch approves do."""
