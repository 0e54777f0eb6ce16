"""edit-transform: commits submitted ops to document logs, one total order per document."""
