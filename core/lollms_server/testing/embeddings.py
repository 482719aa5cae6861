"""Contract of embeddings: one finite vector per text, equal dimensions, deterministic."""

from __future__ import annotations

import math
from typing import ClassVar

from ..bindings import Binding
from .base import ContractBase, contract
from .fixtures import within


def distance(a: list[float], b: list[float]) -> float:
    """Largest absolute difference between two vectors' components."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


class EmbeddingsContract(ContractBase):
    """`embed()`: vectors of one dimension, different texts differ, the same text repeats."""

    embedding_texts: ClassVar[tuple[str, ...]] = (
        "The cat sat on the mat.",
        "Quantum chromodynamics describes how quarks bind.",
    )
    embedding_tolerance: ClassVar[float] = 1e-4

    async def embed(self, binding: Binding, texts: list[str]) -> list[list[float]]:
        """`binding.embed(texts)` with the embedding model, failing after the time limit."""
        model = self.model_for("embeddings")
        vectors = await within(self.request_timeout_s, binding.embed(texts, model), "embed()")
        assert len(vectors) == len(texts), f"{len(texts)} texts but {len(vectors)} vectors"
        return vectors

    @contract("embeddings")
    async def test_vectors_have_one_dimension(self, binding: Binding) -> None:
        """One non-empty vector of finite floats per text, all of the same length."""
        vectors = await self.embed(binding, list(self.embedding_texts))
        dimensions = {len(v) for v in vectors}
        assert len(dimensions) == 1 and dimensions != {0}, f"dimensions {dimensions}"
        for vector in vectors:
            assert all(isinstance(x, float) and math.isfinite(x) for x in vector), vector[:8]

    @contract("embeddings")
    async def test_different_texts_differ(self, binding: Binding) -> None:
        """Two unrelated texts get vectors that are not the same."""
        first, second = await self.embed(binding, list(self.embedding_texts[:2]))
        assert distance(first, second) > self.embedding_tolerance, "different texts, same vector"

    @contract("embeddings")
    async def test_same_text_same_vector(self, binding: Binding) -> None:
        """A text embedded twice (in one batch and again later) gets the same vector."""
        text = self.embedding_texts[0]
        batch = await self.embed(binding, [text, text])
        later = await self.embed(binding, [text])
        assert distance(batch[0], batch[1]) <= self.embedding_tolerance
        assert distance(batch[0], later[0]) <= self.embedding_tolerance
