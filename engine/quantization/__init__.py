"""The quantization tab's engine: one weight matrix (matrices, weights, histogram), memory plans (planner),
live loads (live)."""
