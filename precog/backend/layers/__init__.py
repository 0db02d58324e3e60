"""Model building blocks that know about the paged KV cache."""
