"""Integrations with federated-learning frameworks (optional extras; each imports its framework
only inside its own subpackage, so `import gradinv` never needs them)."""
