"""`ContractSuite`: every contract mixin for a healthy binding, in one base class."""

from __future__ import annotations

from .boundary import SdkContract
from .embeddings import EmbeddingsContract
from .lifecycle import LifecycleContract
from .media import ImageContract, SpeechContract, TranscriptionContract
from .server import ServerContract
from .text import StreamingContract, TextContract


class ContractSuite(
    TextContract,
    StreamingContract,
    ImageContract,
    SpeechContract,
    TranscriptionContract,
    EmbeddingsContract,
    LifecycleContract,
    ServerContract,
    SdkContract,
):
    """Every contract a healthy binding can be held to; capabilities pick what applies."""
