"""Triton kernels; importing any module here imports triton, so only kernels.dispatch-approved calls do."""
