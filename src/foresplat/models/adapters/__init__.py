"""Model adapters behind foresplat.models.adapter.ModelAdapter: edge (foresplat's own predictors),
anysplat and vggt (via the optional package ffgs), da3 (via depth-anything-3), pi3x (via pi3, installed
from a clone, and ffgs); `tiny` builds them at test sizes with random weights. Each module is imported
only when its model is loaded."""
