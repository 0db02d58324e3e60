"""Quality and memory checks of KV compression beyond next-token KL, used by bench/kv_compression_bench.py:
passkey retrieval in a long filler context, multi-instruction following with and without the Pitfalls
protection, and the KV bytes held and decode tokens/s of each run."""

from kv_quality.instructions import InstructionCase, followed, instruction_cases
from kv_quality.passkey import PasskeyCase, passkey_cases, retrieved
from kv_quality.runner import BatchResult, run_batch

__all__ = [
    "BatchResult",
    "InstructionCase",
    "PasskeyCase",
    "followed",
    "instruction_cases",
    "passkey_cases",
    "retrieved",
    "run_batch",
]
