"""rba_core.data: dataset readers (``datasets``) and data pipelines."""
