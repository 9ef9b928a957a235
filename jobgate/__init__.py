"""Jobgate's command line and developer tools (``jobgate web|worker|flower|run``)."""
