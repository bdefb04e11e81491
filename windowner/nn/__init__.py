"""The network: activations, initialisers, layers (forward → (out, cache); backward),
losses and the model."""
