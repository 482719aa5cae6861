"""Contract of the tokenizer (`tokenize`, `detokenize`, `special_tokens`): opt-in, since the
core cannot tell from a class whether it has one (no capability names it)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ..bindings import Binding
from ..errors import ModelNotFound
from .base import ContractBase, contract
from .fixtures import within


class TokenizerContract(ContractBase):
    """Token ids are integers, detokenize inverts tokenize, unknown models are 404s."""

    tokenizer_text: ClassVar[str] = "Hello world, hello tokens."
    exact_detokenize: ClassVar[bool] = True  # False: a tokenizer that normalises text
    unknown_model: ClassVar[str] = "lollms-contract-no-such-model"

    async def token_ids(self, binding: Binding, text: str, model: str) -> list[int]:
        """`binding.tokenize(text, model)`, checked to be a list of int."""
        ids = await within(self.request_timeout_s, binding.tokenize(text, model), "tokenize()")
        assert isinstance(ids, list) and all(type(i) is int for i in ids), (
            f"tokenize() must return a list of int; got {ids!r:.200}"
        )
        return ids

    @contract("ttt")
    async def test_tokenize_gives_token_ids(self, binding: Binding) -> None:
        """A text gives a non-empty list of integer token ids."""
        ids = await self.token_ids(binding, self.tokenizer_text, self.model_for("ttt"))
        assert ids, f"tokenize({self.tokenizer_text!r}) returned no token ids"

    @contract("ttt")
    async def test_detokenize_inverts_tokenize(self, binding: Binding) -> None:
        """detokenize(tokenize(text)) is a str: the text itself when `exact_detokenize`."""
        model = self.model_for("ttt")
        ids = await self.token_ids(binding, self.tokenizer_text, model)
        text = await within(self.request_timeout_s, binding.detokenize(ids, model), "detokenize()")
        assert isinstance(text, str), f"detokenize() must return a str; got {text!r:.200}"
        if self.exact_detokenize:
            assert text.strip() == self.tokenizer_text.strip(), (
                f"detokenize(tokenize(t)) gave {text!r} for {self.tokenizer_text!r}; "
                "set exact_detokenize = False for a tokenizer that normalises text"
            )

    @contract("ttt")
    async def test_special_tokens_are_ids_or_none(self, binding: Binding) -> None:
        """special_tokens() is (BOS, EOS), each an integer id or None."""
        pair = await binding.special_tokens(self.model_for("ttt"))
        assert isinstance(pair, tuple) and len(pair) == 2, f"special_tokens() gave {pair!r}"
        assert all(t is None or type(t) is int for t in pair), f"special_tokens() gave {pair!r}"

    @contract("ttt")
    async def test_tokenize_unknown_model_is_model_not_found(self, binding: Binding) -> None:
        """Tokenizing under a model the backend does not have raises ModelNotFound (a 404)."""
        with pytest.raises(ModelNotFound):
            await within(
                self.request_timeout_s,
                binding.tokenize(self.tokenizer_text, self.unknown_model),
                "tokenize()",
            )
