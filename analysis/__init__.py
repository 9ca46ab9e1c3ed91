"""Dataset statistics of the paper's Figure 2 / Table 1: one decode pass feeding small analyzers."""
