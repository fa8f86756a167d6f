"""The ONNX Runtime engine as its own service, its client and model build tooling.

Imports nothing from kb/ or retrieval/.
"""
