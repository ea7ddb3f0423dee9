"""Layer 3: the concepts of gitgw, built on the state branch and the record formats."""
