"""The quantization tab's engine: one weight matrix (weights), memory plans (planner), live loads (live)."""
