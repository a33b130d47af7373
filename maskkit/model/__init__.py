from maskkit.model.mae import MAEOutput, MaskedAutoencoder, ModelConfig, model_preset, MODEL_PRESETS

__all__ = ["MAEOutput", "MaskedAutoencoder", "ModelConfig", "model_preset", "MODEL_PRESETS"]
