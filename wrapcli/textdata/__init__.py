"""The user's own records (prompt/answer, multiple choice, text/label) and their scoring."""
