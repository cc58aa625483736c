"""What a person sees: the console (progress, one-line errors), tables and figures."""
