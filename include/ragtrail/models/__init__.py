"""The registered retriever's side of the kit: registering a built version (pyfunc and embedder) and keeping
the registry's ``@production`` and the store's alias in agreement. It joins the trail and the store."""
