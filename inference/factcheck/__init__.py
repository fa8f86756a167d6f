"""The answer fact-checker's entailment model: does a passage support a claim?

entailment.py scores pairs with the shipped INT8 ONNX model in model/; train.py reproduces that model
(fine-tuning, export, quantization, dev scores, manifest). Imports nothing from kb/ or retrieval/.
"""
