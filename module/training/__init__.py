"""Training-side tools for the reference detector (needs PyTorch; never imported on the board)."""
