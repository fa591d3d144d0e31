"""The diagnostics of "Beyond Semantics" ([B], arXiv 2503.17349) as library functions on hooked
models (spec B1-B9): norms per token group (`norms`), the token-permutation test (`permutation`),
normalised attention entropy (`entropy`), the norm sweep (`sweep`), spatial compression retrained
per pooled size (`pooling`), [L] App. O's text -> vision term gradients and block ablations
(`text_vision`), and the extensions from [B] v2's code (B11, not in v1's text): Cross-Modality
Balance (`balance`) and the RoPE sensitivity probe (`rope_probe`). Functions that only need
activations take an `ActivationCache` (or patterns) plus the vision / text token spans, so they
apply to any hooked model; the rest take a `HookedPrefixLM` and a split of its `CaptionTask`."""
