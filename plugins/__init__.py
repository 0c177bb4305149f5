"""ctxcloud's built-in plugins; each is loaded through the ctxcloud.plugins entry-point group."""
