from maskkit.model.mae import MODEL_PRESETS, MAEOutput, MaskedAutoencoder, ModelConfig, model_preset

__all__ = ["MAEOutput", "MaskedAutoencoder", "ModelConfig", "model_preset", "MODEL_PRESETS"]
