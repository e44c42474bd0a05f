"""The paper's experiments: data sets, SGD training, the convergence search, gate analysis, checkpoints."""
