"""Model families. Each module defines an ``nn.Module`` whose constructor takes its
config dict and whose ``forward`` maps audio to raw outputs; features are computed
inside the model."""
