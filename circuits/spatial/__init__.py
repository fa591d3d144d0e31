"""The diagnostics of "Beyond Semantics" ([B], arXiv 2503.17349) as library functions on hooked
models (spec B1-B9): norms per token group (`norms`), the token-permutation test (`permutation`),
normalised attention entropy (`entropy`) and the norm sweep (`sweep`). Functions that only need
activations take an `ActivationCache` (or patterns) plus the vision / text token spans, so they
apply to any hooked model; the rest take a `HookedPrefixLM` and a split of its `CaptionTask`."""
