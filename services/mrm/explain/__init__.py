"""The Explain service: SHAP explanations of archived decisions, computed from ONNX."""
