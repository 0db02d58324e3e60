"""Our Llama-family model, its checkpoint spec and loader, and `precog model prepare`."""
