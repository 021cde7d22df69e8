"""`mrmctl deploy`: load, convert, check and record a scikit-learn model in the user's CI."""
