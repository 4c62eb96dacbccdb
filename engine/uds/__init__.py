"""UDS online batch selection for SFT: scorer, selectors, buffer, training loop and the run log they write."""
