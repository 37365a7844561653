"""Dataset layouts (MusicNet, MAESTRO) and the synthetic corpus factory."""
