"""One module per scenario; each returns its figures as a flat dict."""
