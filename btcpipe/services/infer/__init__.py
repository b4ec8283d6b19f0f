"""The inference service: online store (or its own fallback features) → ONNX model → predictions stream and
archive, with shadow evaluation and feature drift."""
