"""The gateway's HTTP surface, one router per audience: OpenAI clients, operators (admin), probes/metrics."""
