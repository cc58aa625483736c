"""The one training loop and what it needs: batches, resumable state, the lean memory
levers, LoRA adapters and the presets that name whole protocols."""
