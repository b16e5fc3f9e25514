"""Loading a model and its data: models, devices (placement, onloading), oneDNN linears, shallow copies with
other weights, classification and LM data. Nothing here builds the embedded defaults (:mod:`pruning.embedded`)."""
