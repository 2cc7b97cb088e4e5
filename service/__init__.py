"""HTTP service: /v1/ask with cited passages, documents, admin, Dify retrieval, widget."""
