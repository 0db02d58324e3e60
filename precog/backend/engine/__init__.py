"""The engine: sequences, KV blocks, the scheduler, the model runner, sampling, and the step loop."""
