"""precog, a storage-assisted LLM inference gateway: `precog.store`, `precog.backend`, `precog.gateway`,
`precog.precompute` and `precog.kernels` over the base `precog.core`; `precog.shell` is the command."""
