"""Model adapters behind foresplat.models.adapter.ModelAdapter: edge (foresplat's own predictors),
anysplat (via the optional package ffgs). Each module is imported only when its model is loaded."""
