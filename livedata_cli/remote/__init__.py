"""The client side of a Live-Data server: HTTP, tokens, accounts, takeout, password gates."""
