"""Generators of files checked into the repository (docs, schema); tests check each output
equals what its generator makes now."""
