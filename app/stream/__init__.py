"""The stream core, the same under every host: one supervised generation (`session`), its budgets
(`limits`), the one loop that frames its events (`consumer`) in each wire dialect (`dialects/`), and
explicit cancels (`cancel/`). Nothing here imports a web framework or an AWS SDK at module level."""
