"""The model: labeled datasets and splits, MLP training (torch, optional), ONNX export, the onnxruntime runtime,
the versioned registry in the lake, evaluation against baselines and the simulator's oracle, reports."""
