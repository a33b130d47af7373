"""The plug-in contract across renames: a modality written against maskkit 0.1 (``Options``,
``self.options``, ``make_position_embedding``) still trains with warnings naming the new names; one that
does not fit is refused with one line when its class is defined."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import Tensor, nn
from toy import BlobDataset  # tests/ is on sys.path (conftest): one module, one registration

from maskkit.errors import MaskkitDeprecationWarning, MaskkitError, PluginError
from maskkit.modalities.image.tokenizer import patchify, unpatchify
from maskkit.modality import Modality
from maskkit.positions import FixedGridPositionEmbedding
from maskkit.registry import register_modality
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout
from maskkit.train.config import TrainConfig
from maskkit.train.trainer import run_training


@dataclass
class OldOptions:
    patch_size: int = 2
    norm_pix_loss: bool = True


def define_old_plugin():
    """The classes as a 0.1 plug-in wrote them (every member under its old name)."""

    class OldTokenizer(Tokenizer):
        def __init__(self, patch: int, embed_dim: int) -> None:
            super().__init__()
            self.patch, self.embed_dim, self.target_dim = patch, embed_dim, patch * patch
            self.layout = TokenLayout.from_grid((8 // patch, 8 // patch), ("h", "w"))
            self.proj = nn.Linear(patch * patch, embed_dim)

        def tokenize(self, x: Tensor) -> TokenBatch:
            targets = patchify(x, self.patch)
            positions = self.layout.grid_coordinates().float()
            return TokenBatch(embeddings=self.proj(targets), targets=targets, positions=positions,
                              layout=self.layout)

        def untokenize(self, targets: Tensor, tokens: TokenBatch | None = None) -> Tensor:
            return unpatchify(targets, self.patch, self.layout.grid, 1)

        def make_position_embedding(self, dim: int) -> nn.Module:
            return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)

    class OldModality(Modality):
        name = "old-plugin-test"
        description = "written against maskkit 0.1"
        Options = OldOptions
        default_data = "builtin:blobs"

        def build_dataset(self, data, train, seed=0):
            return BlobDataset(n=32, seed=seed, augment=train)

        def build_tokenizer(self, embed_dim):
            return OldTokenizer(self.options.patch_size, embed_dim)

    return OldModality


def test_a_plugin_written_before_the_renames_still_trains(tmp_path):
    with pytest.warns(MaskkitDeprecationWarning) as caught:
        register_modality(define_old_plugin())
    messages = [str(w.message) for w in caught]
    assert any("OldModality.Options was renamed `Config`" in m for m in messages), messages
    assert any("OldTokenizer.make_position_embedding was renamed `build_position_embedding`" in m
               for m in messages), messages
    assert any("OldModality.build_dataset has no `on_bad_file` parameter" in m for m in messages), messages
    assert all(w.filename == __file__ for w in caught)  # points at the plug-in's class statement
    with pytest.warns(MaskkitDeprecationWarning, match=r"OldModality.options was renamed `config`"):
        result = run_training(TrainConfig(modality="old-plugin-test", model="nano", epochs=1, batch_size=8,
                                          max_steps_per_epoch=2, out=str(tmp_path / "run"), progress=False))
    assert result.steps == 2
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_import_maskkit_shows_the_deprecation_by_default():
    """Plug-in authors run maskkit, not pytest: importing maskkit turns the warning on by default."""
    import importlib
    import warnings

    import maskkit

    with warnings.catch_warnings():
        warnings.resetwarnings()
        importlib.reload(maskkit)
        assert warnings.filters[0][0] == "default" and warnings.filters[0][2] is MaskkitDeprecationWarning


def test_a_modality_without_its_options_dataclass_is_refused_when_defined():
    with pytest.raises(PluginError) as info:
        class NoConfig(Modality):
            name = "no-config-test"

            def build_dataset(self, data, train, seed=0):
                return BlobDataset()

            def build_tokenizer(self, embed_dim):
                raise AssertionError("never reached")

    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, MaskkitError)
    assert "NoConfig" in message and "`Config`" in message and "`Options`" in message


def test_a_tokenizer_without_a_position_embedding_is_refused_when_defined():
    with pytest.raises(PluginError, match=r"NoPositions does not fit the Tokenizer contract: it has no "
                                          r"`build_position_embedding` \(before maskkit 0.2.0 it was called "
                                          r"`make_position_embedding`\)"):
        class NoPositions(Tokenizer):
            def tokenize(self, x: Tensor) -> TokenBatch:
                raise AssertionError("never reached")


def test_a_modality_missing_a_method_is_refused():
    with pytest.raises(PluginError, match=r"NoData does not fit the Modality contract: it has no `build_dataset`$"):
        class NoData(Modality):
            name = "no-data-test"
            Config = OldOptions

            def build_tokenizer(self, embed_dim):
                raise AssertionError("never reached")
