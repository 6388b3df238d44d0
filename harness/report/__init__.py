"""Presentation only: terminal tables, traces and spans; the numbers arrive computed."""
