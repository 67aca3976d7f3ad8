"""Shared by both halves. Never imports requests or kubernetes."""
