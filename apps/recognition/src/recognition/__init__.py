"""UNDE recognition.

Recognition orchestrator: the recognize_photo pipeline (detect, tag, dual retrieval, availability
filter, rerank) on recognition_queue.

Deployed by ``roles/recognition`` on recognition (10.1.0.14).
"""

__version__ = "0.1.0"
