"""The backends a workload's model stages run on besides torch: onnxruntime and its export."""
